/**
 * Prints one plain closing line, "N passed, N failed", that CI log readers recognise
 * whatever the test runner (jest's own summary is not one of theirs).
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const suites = results.numFailedTestSuites + results.numRuntimeErrorTestSuites;
    const failed = results.numFailedTests + (suites > 0 && results.numFailedTests === 0 ? suites : 0);
    process.stdout.write(`\njest: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
