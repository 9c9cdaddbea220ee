/**
 * fleetbridge.dev/v1alpha1 resources as zod schemas: the one source for validation in both
 * modes and for the generated CRDs. Imports nothing else of ours.
 */
export * from './common.js';
export * from './collector.js';
export * from './opampbridge.js';
