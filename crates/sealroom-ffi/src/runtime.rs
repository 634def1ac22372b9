//! The one tokio runtime every binding call runs on.
//!
//! Foreign languages bring their own event loops (asyncio, Swift concurrency, Kotlin
//! coroutines); none of them is a tokio runtime, which quinn and the client need. So the
//! library starts a small multi-threaded runtime on first use and runs each async call
//! there, handing the foreign side a future that completes when the task does.

#![allow(unsafe_code)] // UniFFI's export macro expands to an unsafe extern function.

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

/// Worker threads of the runtime: a client's work is I/O and sealing, and two threads
/// keep a room's receive path off the thread that publishes.
const WORKER_THREADS: usize = 2;

/// How long [`shutdown`] waits for the runtime's threads.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The runtime itself, until [`shutdown`] takes it.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

pub(crate) fn runtime() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let runtime = Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("sealroom")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("sealroom could not start its tokio runtime: {err}"));
        let handle = runtime.handle().clone();
        *RUNTIME.lock().unwrap_or_else(PoisonError::into_inner) = Some(runtime);
        handle
    })
}

/// Stop the library's runtime: every client and room stops, and the runtime's threads
/// end (waiting up to two seconds for them). Calls made afterwards fail with an internal
/// error.
///
/// For the end of a program: an interpreter that tears itself down while the runtime's
/// threads may still call back into it (to complete a future) can abort instead of
/// exiting. The Python package calls this from `atexit`.
#[uniffi::export]
pub fn shutdown() {
    let runtime = RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(runtime) = runtime {
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    }
}

/// Run `future` on the runtime and wait for it from any executor. A panic inside is
/// resumed here, where UniFFI turns it into the foreign language's internal error.
pub(crate) async fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match runtime().spawn(future).await {
        Ok(output) => output,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("sealroom task ended without a result: {err}"),
        },
    }
}
