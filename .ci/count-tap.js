'use strict';
// Counts a tap run's results from its TAP stream: every test point one level below a test file
// (a subtest or a top-level assertion), plus any file that failed without a failing point inside
// (a crash, a timeout). Prints `N passed, N failed, N skipped` and exits 1 when anything failed.
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n');
let passed = 0,
  failed = 0,
  skipped = 0,
  failedInFile = 0,
  files = 0;
for (const line of lines) {
  let m = /^    (not ok|ok) \d+/.exec(line);
  if (m) {
    if (/# (SKIP|TODO)/i.test(line)) skipped++;
    else if (m[1] === 'ok') passed++;
    else {
      failed++;
      failedInFile++;
    }
    continue;
  }
  m = /^(not ok|ok) \d+ - /.exec(line);
  if (m) {
    files++;
    if (m[1] === 'not ok' && failedInFile === 0) failed++;
    failedInFile = 0;
  }
}
if (files === 0) failed++; // no test ran at all: that is a failure, not a pass
// Results of checks run outside tap (lint, format, circular imports), passed as arguments.
passed += Number(process.argv[3] ?? 0);
failed += Number(process.argv[4] ?? 0);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
