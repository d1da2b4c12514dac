//! Least-privilege provider credentials against nats-server in operator mode: the operator,
//! account and user JWTs are made with nats-io-jwt, the host mints one scoped user per provider
//! instance, the real provider runs under it, and the server refuses what it is not allowed.

use std::time::Duration;

use serde_json::json;

use crate::providers::{decode_i32, file_ref, put_link, record_config, start_provider, HEALTH_INTERVAL_MS};
use crate::support::provider::{make_par, wait_record};
use crate::support::rpc::{Lab, EVENT_TIMEOUT};
use crate::support::signed_kvcounter;

/// A nats-server in operator mode (JWTs made with nats-io-jwt, a memory resolver with the
/// account preloaded, JetStream on for it), the account key, and full-permission user
/// credentials for the host and the test clients. `extra_config` is appended to the server's
/// configuration (a later `jetstream` block replaces the default one).
pub(crate) fn operator_mode_nats(extra_config: &str) -> (crate::support::Nats, nkeys::KeyPair, (String, String)) {
    let (config, account, credentials) = operator_mode_config(extra_config);
    (
        crate::support::Nats::start_with_config(&config, credentials.clone()),
        account,
        credentials,
    )
}

/// The configuration lines of an operator-mode nats-server (plus `extra_config`), its account
/// key and a full-permission user's JWT and seed.
pub fn operator_mode_config(extra_config: &str) -> (String, nkeys::KeyPair, (String, String)) {
    use nats_io_jwt::{Account, Operator, OperatorLimits, Token, User};
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let operator_claims: Operator = Operator::builder()
        .system_account(Some(nats_io_jwt::SystemAccount(system.public_key())))
        .try_into()
        .expect("operator claims");
    let operator_jwt = Token::new(operator.public_key())
        .name("test operator")
        .claims(operator_claims)
        .sign(&operator);
    let account_claims: Account = Account::builder()
        .limits(OperatorLimits::default())
        .try_into()
        .expect("account claims");
    let account_jwt = Token::new(account.public_key())
        .name("lattice")
        .claims(account_claims)
        .sign(&operator);
    let system_claims: Account = Account::builder().try_into().expect("system account claims");
    let system_jwt = Token::new(system.public_key())
        .name("system")
        .claims(system_claims)
        .sign(&operator);
    let user = nkeys::KeyPair::new_user();
    let user_claims: User = User::builder().bearer_token(false).try_into().expect("user claims");
    let user_jwt = Token::new(user.public_key())
        .name("host and tests")
        .claims(user_claims)
        .sign(&account);
    let config = format!(
        "operator: {operator_jwt}\nsystem_account: {system_key}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n  {system_key}: {system_jwt}\n}}\n{extra_config}\n",
        account.public_key(),
        system_key = system.public_key(),
    );
    let credentials = (user_jwt, user.seed().expect("seed"));
    (config, account, credentials)
}

#[tokio::test]
async fn scoped_credentials_let_a_provider_use_its_own_subjects_only() {
    use crate::support::{unique_lattice, HostOptions};
    let (nats, account, (jwt, seed)) = operator_mode_nats("");
    let mut options = HostOptions::new(&unique_lattice("provscoped"))
        .arg("--rpc-timeout-ms", "1500")
        .arg("--provider-health-interval-ms", HEALTH_INTERVAL_MS)
        .arg("--prov-rpc-account-seed", &account.seed().expect("seed"));
    for conn in ["ctl", "rpc", "prov-rpc"] {
        options = options
            .arg(&format!("--{conn}-jwt"), &jwt)
            .arg(&format!("--{conn}-seed"), &seed);
    }
    let mut lab = Lab::start_on(nats, options, tempfile::tempdir().expect("tempdir")).await;
    let par = make_par(lab.dir.path(), "kv.par", false);
    let counter = signed_kvcounter("scoped");
    lab.start("kvcounter.wasm", &counter, 1).await;
    put_link(&lab, &counter.key, &par.key, json!({})).await;
    let (records_path, config) = record_config(&lab, "kv", json!({}));
    // Connected, subscribed and answering health checks with its own credentials.
    start_provider(&mut lab, &file_ref(&par.path), "default", &config).await;
    let host_data = wait_record(&records_path, 1, EVENT_TIMEOUT, "host_data", |r| {
        r["event"] == "host_data"
    })
    .await;
    let provider_jwt = host_data["user_jwt"].as_str().expect("user_jwt").to_string();
    let provider_seed = host_data["user_seed"].as_str().expect("user_seed").to_string();
    assert!(
        !provider_jwt.is_empty() && provider_jwt != jwt,
        "the provider got its own JWT"
    );
    assert!(provider_seed.starts_with("SU"), "a user seed");
    // Actor → provider → reply works under them.
    assert_eq!(
        decode_i32(&lab.call(&counter.key, "Counter.Hit", b"").await.expect("hit")),
        1
    );

    // As that provider: its own subjects are fine, another provider's are refused.
    let (errors_tx, mut errors_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let provider_nc = crate::support::jwt_options(&provider_jwt, &provider_seed)
        .event_callback(move |event| {
            let errors_tx = errors_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = errors_tx.send(e.to_string());
                }
            }
        })
        .connect(lab.nats.url())
        .await
        .expect("connect with the provider's credentials");
    let lattice = lab.host.lattice.clone();
    let own = format!("wasmbus.rpc.{lattice}.{}.default.health", par.key);
    let _own_sub = provider_nc.subscribe(own).await.expect("subscribe own");
    provider_nc.flush().await.expect("flush");
    let quiet = tokio::time::timeout(Duration::from_millis(500), errors_rx.recv()).await;
    assert!(quiet.is_err(), "its own subject was refused: {quiet:?}");
    let other = format!("wasmbus.rpc.{lattice}.{}.default", crate::support::new_provider_key());
    let _other_sub = provider_nc.subscribe(other.clone()).await.expect("subscribe call");
    provider_nc.flush().await.expect("flush");
    let refused = tokio::time::timeout(Duration::from_secs(5), errors_rx.recv())
        .await
        .expect("the server refuses another provider's subject")
        .expect("an error");
    assert!(
        refused.contains("Permissions Violation") && refused.contains(&other),
        "{refused}"
    );
    provider_nc
        .publish(format!("wasmbus.ctl.{lattice}.ping.hosts"), "x".into())
        .await
        .expect("publish call");
    provider_nc.flush().await.expect("flush");
    let refused = tokio::time::timeout(Duration::from_secs(5), errors_rx.recv())
        .await
        .expect("the server refuses a control-interface publish")
        .expect("an error");
    assert!(refused.contains("Permissions Violation"), "{refused}");
}
