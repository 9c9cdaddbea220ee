// Preloaded (node --import) into bridge processes started by test/harness/bridge-process.ts: the
// process exits as soon as its stdin closes, so a test runner that dies (even by SIGKILL) never
// leaves a bridge listening on a port. The bridge itself does not read stdin.
process.stdin.on('end', () => process.exit(70));
process.stdin.on('error', () => process.exit(70));
process.stdin.resume();
