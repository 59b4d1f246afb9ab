//! The executor conformance suite on [`LocalProcess`] without a task reaper (the `spillway`
//! binary's end-to-end tests run it with one).

use spillway_executor::LocalProcess;
use spillway_executor::conformance::local::LocalHarness;

spillway_executor::executor_conformance_tests!(|| async {
    LocalHarness::boxed(LocalProcess::new())
});
