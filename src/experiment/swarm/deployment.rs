//! What one run changes on the Swarm (node label, secret, stack, load container), recorded as it
//! is made so that teardown removes exactly that, and waits until it is gone.

use anyhow::Context as _;
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::stack::{self, SECRET};

/// How long a stack's removal may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run changed on the Swarm, so teardown removes exactly that.
pub(super) struct Deployment {
    pub engine: Engine,
    pub stack: String,
    /// This node (a manager), set by [`Deployment::place`].
    pub node: String,
    pub label_added: bool,
    pub secret_created: bool,
    pub deployed: bool,
    pub load_container: Option<String>,
}

impl Deployment {
    pub fn new(engine: Engine, stack: String) -> Deployment {
        Deployment {
            engine,
            stack,
            node: String::new(),
            label_added: false,
            secret_created: false,
            deployed: false,
            load_container: None,
        }
    }

    /// Remove everything this run created and wait until it is gone. Errors name what is left.
    pub async fn teardown(&mut self) -> anyhow::Result<()> {
        let engine = &self.engine;
        let mut problems = Vec::new();
        if let Some(c) = self.load_container.take()
            && let Err(e) = engine.remove_container(&c).await
        {
            problems.push(format!("{e:#}"));
        }
        if self.deployed {
            if let Err(e) = stack::remove(&self.stack).await {
                problems.push(format!("{e:#}"));
            }
            // Removal is asynchronous: tasks stop, then networks and configs can go. The stack's
            // named volumes outlive `docker stack rm`; they go once no container uses them.
            let deadline = Instant::now() + REMOVE_TIMEOUT;
            loop {
                let left = engine.stack_leftovers(&self.stack).await;
                let volumes = left.iter().map(|l| l.strip_prefix("volume "));
                if let Some(volumes) = volumes.collect::<Option<Vec<&str>>>() {
                    for v in volumes {
                        // Still in use until the last container is gone: tried again.
                        let _ = engine.remove_volume(v).await;
                    }
                }
                let left = engine.stack_leftovers(&self.stack).await;
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "stack {} not gone after {REMOVE_TIMEOUT:?}: {}; remove by hand with \
                         `docker stack rm {}` and `docker volume rm`",
                        self.stack,
                        left.join(", "),
                        self.stack
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            self.deployed = false;
        }
        if std::mem::take(&mut self.secret_created)
            && let Err(e) = engine.remove_secret(SECRET).await
        {
            problems.push(format!("{e:#}"));
        }
        if std::mem::take(&mut self.label_added)
            && let Err(e) = engine.set_node_label(&self.node, "role", None).await
        {
            problems.push(format!(
                "{e:#}; remove it by hand: `docker node update --label-rm role {}`",
                self.node
            ));
        }
        anyhow::ensure!(
            problems.is_empty(),
            "removing the run's stack: {}",
            problems.join("; ")
        );
        Ok(())
    }

    /// Placement for this Swarm: the stack puts the workload on `role=worker` nodes and the
    /// rest on `role=${MASTER_ROLE}` (the scaler also on a manager). With labelled nodes of both
    /// roles the paper's placement is used; a single node is labelled `role=worker` if it has no
    /// role and everything runs there (`MASTER_ROLE=worker`). Returns MASTER_ROLE.
    pub async fn place(&mut self) -> anyhow::Result<&'static str> {
        self.node = self.engine.manager_node().await?;
        let roles = self.engine.node_roles().await?;
        let has = |r: &str| roles.iter().any(|(_, x)| x.as_deref() == Some(r));
        if has("worker") && has("master") {
            return Ok("master");
        }
        let mine = roles
            .iter()
            .find(|(id, _)| *id == self.node)
            .and_then(|(_, role)| role.as_deref());
        match mine.unwrap_or("") {
            "" => {
                self.engine
                    .set_node_label(&self.node, "role", Some("worker"))
                    .await?;
                self.label_added = true;
                Ok("worker")
            }
            "worker" => Ok("worker"),
            other => anyhow::bail!(
                "this node is labelled role={other} and no node is labelled role=worker, so the \
                 workload has nowhere to run; label a node: `docker node update --label-add \
                 role=worker <node>` (on a single node: remove this node's role label)"
            ),
        }
    }

    /// Create the scaler's secret if the Swarm has none.
    pub async fn ensure_secret(&mut self) -> anyhow::Result<()> {
        if self.engine.secret_exists(SECRET).await? {
            return Ok(());
        }
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .context("reading /dev/urandom for the scaler's token")?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.engine.create_secret(SECRET, token.as_bytes()).await?;
        self.secret_created = true;
        Ok(())
    }
}
