//! A policy service on NATS for the tests: it records every request it is sent (as JSON) and
//! answers each as its `decide` function says — permit, deny with a message, never answer, or
//! answer with something that is not a decision.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{json, Value};

/// How the service answers one request.
pub enum Answer {
    Permit,
    Deny(&'static str),
    Silent,
    Garbage,
}

/// A running policy service; stops when dropped.
pub struct PolicyService {
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyService {
    /// Answer requests on `topic` with `decide`, subscribed (and flushed) before it returns.
    pub async fn start(
        nc: &async_nats::Client,
        topic: &str,
        decide: impl Fn(&Value) -> Answer + Send + 'static,
    ) -> PolicyService {
        let mut requests_sub = nc
            .subscribe(topic.to_string())
            .await
            .expect("subscribe to the policy topic");
        nc.flush().await.expect("flush the policy subscription");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let nc = nc.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = requests_sub.next().await {
                let request: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                let answer = decide(&request);
                seen.lock().expect("requests").push(request.clone());
                let Some(reply) = message.reply else { continue };
                let body = match answer {
                    Answer::Permit => json!({"requestId": request["requestId"], "permitted": true, "message": null})
                        .to_string()
                        .into_bytes(),
                    Answer::Deny(why) => json!({"requestId": request["requestId"], "permitted": false, "message": why})
                        .to_string()
                        .into_bytes(),
                    Answer::Garbage => b"{\"permitted\": \"perhaps\"".to_vec(),
                    Answer::Silent => continue,
                };
                let _ = nc.publish(reply, body.into()).await;
            }
        });
        PolicyService { requests, task }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("requests").clone()
    }

    /// The requests for `action`.
    pub fn requests_for(&self, action: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["action"] == action).collect()
    }
}

impl Drop for PolicyService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
