/**
 * Rendering: selecting Collectors for an agent, merging them, validating and hashing the result.
 * Pure functions; of src/ it imports only the schema (docs/architecture.md).
 */
export * from './select.js';
export * from './merge.js';
export * from './hash.js';
export * from './validate.js';
export * from './render.js';
export * from './desired.js';
export * from './yaml.js';
