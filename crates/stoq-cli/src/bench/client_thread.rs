//! The benchmark's clients run as `stoq get` runs: on a thread of their own with a
//! single-threaded runtime, apart from the nodes' runtime (as a `stoq get` process is apart
//! from `stoq serve`). Baselines whose client should stand where STOQ's stands run there too.

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;

/// Work for the client thread: called there, and the future it returns spawned there.
type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A thread with a current-thread runtime that runs the tasks it is sent, each as a task of
/// its own, so tasks sent together run together.
#[derive(Clone)]
pub(super) struct ClientThread {
    tasks: tokio::sync::mpsc::UnboundedSender<Task>,
}

impl ClientThread {
    pub(super) fn start() -> Result<ClientThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tasks, mut queue) = tokio::sync::mpsc::unbounded_channel::<Task>();
        std::thread::Builder::new()
            .name("bench-client".into())
            .spawn(move || {
                runtime.block_on(async {
                    while let Some(task) = queue.recv().await {
                        tokio::spawn(task());
                    }
                })
            })?;
        Ok(ClientThread { tasks })
    }

    /// Runs `work` on the client thread (what it creates there, such as an endpoint, is driven
    /// there) and returns its result.
    pub(super) async fn run<T, Fut>(&self, work: impl FnOnce() -> Fut + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            Box::pin(async move {
                let _ = done.send(work().await);
            })
        });
        self.tasks
            .send(task)
            .map_err(|_| anyhow::anyhow!("the client thread has stopped"))?;
        answer.await?
    }
}
