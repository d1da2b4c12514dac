//! Tests of the host's command line and environment ([`super::Config::from_args`]).

use super::*;

fn parse(argv: &[&str]) -> std::result::Result<Cli, clap::Error> {
    let mut full = vec!["shardhost"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full)
}

fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<Config> {
    let cli = parse(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_args(cli.host, &env)
}

#[test]
fn defaults_plan_local_nats() {
    let c = config(&[], &[]).unwrap();
    assert_eq!(c.nats_plan, NatsPlan::LocalOrManaged);
    assert_eq!(c.lattice, "default");
    assert_eq!(c.ctl.url(), "nats://127.0.0.1:4222");
    assert!(c.shard_count >= 1);
    assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
}

#[test]
fn kv_replicas_default_to_one_and_stay_within_what_jetstream_allows() {
    assert_eq!(config(&[], &[]).unwrap().kv_replicas, 1);
    assert_eq!(config(&["--kv-replicas", "3"], &[]).unwrap().kv_replicas, 3);
    for bad in ["0", "6", "three"] {
        assert!(parse(&["--kv-replicas", bad]).is_err(), "--kv-replicas {bad}");
    }
}

#[test]
fn explicit_nats_and_overrides() {
    let c = config(
        &[
            "--nats-host",
            "10.0.0.1",
            "--nats-port",
            "4333",
            "--rpc-port",
            "5000",
            "-x",
            "lat",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.nats_plan, NatsPlan::Given);
    assert_eq!(c.ctl.url(), "nats://10.0.0.1:4333");
    assert_eq!(c.rpc.url(), "nats://10.0.0.1:5000");
    assert_eq!(c.lattice, "lat");
}

#[test]
fn warm_set_and_slot_flags() {
    let c = config(&[], &[]).unwrap();
    assert_eq!(c.warm_release, Some(Duration::from_secs(WARM_RELEASE_SECS_DEFAULT)));
    assert_eq!(c.runtime_limits.instance_memory_keep_bytes, 16 << 20);
    assert_eq!(c.runtime_limits.memory_keep_resident_bytes, 0, "instances live on");
    let fresh = config(&["--instance-max-invocations", "1"], &[]).unwrap();
    assert_eq!(fresh.runtime_limits.memory_keep_resident_bytes, 64 << 10);
    let machine = machine_memory_bytes().expect("MemTotal in /proc/meminfo");
    assert_eq!(
        c.runtime_limits.instance_slots_total,
        instance_slots_for_memory(machine)
    );
    let c = config(
        &[
            "--warm-release-secs",
            "0",
            "--instance-memory-keep-mib",
            "0",
            "--instance-slots",
            "12",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.warm_release, None);
    assert_eq!(c.runtime_limits.instance_memory_keep_bytes, 0);
    assert_eq!(c.runtime_limits.instance_slots_total, 12);
}

#[test]
fn lattice_prefix_aliases() {
    assert_eq!(config(&["--lattice-prefix", "a"], &[]).unwrap().lattice, "a");
    assert_eq!(config(&[], &[("WASMCLOUD_LATTICE_PREFIX", "b")]).unwrap().lattice, "b");
    assert!(config(&["--lattice", "a.b"], &[]).is_err());
}

#[test]
fn bad_values_fail() {
    assert!(parse(&["--nats-port", "0"]).is_err());
    assert!(parse(&["--bogus"]).is_err());
    assert!(parse(&["--shards", "0"]).is_err());
    let server_seed = nkeys::KeyPair::new_server().seed().unwrap();
    assert!(config(&["--cluster-seed", &server_seed], &[]).is_err());
    let cluster_seed = nkeys::KeyPair::new_cluster().seed().unwrap();
    assert!(config(&["--host-seed", &cluster_seed], &[]).is_err());
    assert!(config(&["--cluster-issuers", "NOTAKEY"], &[]).is_err());
    assert!(config(&["--heartbeat-interval-ms", "5"], &[]).is_err());
    assert!(config(&["--rpc-jwt", "x"], &[]).is_err());
    assert!(config(&["--log-level", "loud"], &[]).is_err());
    assert!(config(&["--instance-slots", "0"], &[]).is_err());
    assert!(config(&["--actor-memory-max-mib", "0"], &[]).is_err());
}

#[test]
fn labels_from_flags_and_env() {
    let c = config(&["--label", "zone=a"], &[("WASMCLOUD_LABEL_Region", "eu")]).unwrap();
    assert_eq!(c.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(
        c.labels.get("Region").map(String::as_str),
        Some("eu"),
        "case kept, as on 0.82"
    );
    assert!(c.labels.contains_key("hostcore.arch"));
    assert!(c.labels.contains_key("hostcore.os"));
    assert!(c.labels.contains_key("hostcore.osfamily"));
}

#[test]
fn up_subcommand_takes_host_flags() {
    let cli = parse(&["up", "--lattice", "z"]).unwrap();
    match cli.command {
        Some(Command::Up(args)) => assert_eq!(args.lattice.as_deref(), Some("z")),
        other => panic!("unexpected {other:?}"),
    }
}
