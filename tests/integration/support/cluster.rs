//! A three-node nats-server cluster on loopback (routes between the nodes, clustered
//! JetStream), for the node-loss scenario of issue 10. Each node has its own client port,
//! route port and JetStream store; a killed node restarts from the same configuration and
//! store, and rejoins.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, nats_server_binary, Nats};

/// Nodes in the cluster: the fewest that keep an R3 stream's quorum with one node lost.
pub const NODES: usize = 3;
/// How long the cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct NatsCluster {
    root: tempfile::TempDir,
    pub client_ports: [u16; NODES],
}

impl NatsCluster {
    /// Writes the three configurations and starts every node; returns them in order.
    pub fn start() -> (NatsCluster, Vec<Nats>) {
        let root = tempfile::tempdir().expect("tempdir for the cluster");
        let client_ports = [free_port(), free_port(), free_port()];
        let route_ports = [free_port(), free_port(), free_port()];
        for node in 0..NODES {
            let routes: Vec<String> = (0..NODES)
                .filter(|other| *other != node)
                .map(|other| format!("\"nats-route://127.0.0.1:{}\"", route_ports[other]))
                .collect();
            let store = root.path().join(format!("js{node}"));
            let text = format!(
                "server_name: n{node}\nlisten: 127.0.0.1:{}\n\
                 jetstream: {{ store_dir: \"{}\" }}\n\
                 cluster: {{ name: shardlab, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                client_ports[node],
                store.display(),
                route_ports[node],
                routes.join(", ")
            );
            std::fs::write(root.path().join(format!("n{node}.conf")), text).expect("write node config");
        }
        let cluster = NatsCluster { root, client_ports };
        let nodes = (0..NODES).map(|node| cluster.start_node(node)).collect();
        (cluster, nodes)
    }

    fn config(&self, node: usize) -> PathBuf {
        self.root.path().join(format!("n{node}.conf"))
    }

    /// Starts `node` (again) from its configuration and JetStream store.
    pub fn start_node(&self, node: usize) -> Nats {
        let mut command = Command::new(nats_server_binary());
        command.arg("-c").arg(self.config(node));
        // The log lives in a directory of its own; the store outlives the process.
        Nats::spawn(
            command,
            self.client_ports[node],
            tempfile::tempdir().expect("tempdir for the node's log"),
        )
    }

    /// Waits (bounded) until clustered JetStream takes an R3 stream: a meta leader is elected
    /// and every node has joined.
    pub async fn wait_ready(&self, client: &async_nats::Client) {
        let js = async_nats::jetstream::new(client.clone());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = async_nats::jetstream::stream::Config {
                name: "READY_PROBE".to_string(),
                subjects: vec!["ready.probe".to_string()],
                num_replicas: NODES,
                ..Default::default()
            };
            match js.create_stream(probe).await {
                Ok(_) => {
                    js.delete_stream("READY_PROBE").await.expect("delete the probe stream");
                    return;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "clustered JetStream not ready within {READY_TIMEOUT:?}: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
