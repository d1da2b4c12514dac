//! The lattice's JSON surfaces: control-interface requests and KV bucket entries. The first
//! line of the input names what the rest is:
//! - `kv:{key}`: a bucket entry under that key, for `parse_entry` (what the KV watch applies);
//! - anything else: a subject below `wasmbus.ctl.fuzz.` (host id `NFUZZ`), whose body the host
//!   routes and decodes with `route` and `decode_body`, as the control plane does.
//!
//! No input may panic. A refusal is a non-empty reason whose error ack serialises and reads back;
//! an accepted request holds what the control plane relies on (references non-empty, counts at
//! least 1, link names defaulted, host-owned labels untouched), and a link accepted by
//! `linkdefs.put` reads back from its KV entry as the same link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardhost::lattice::{parse_entry, Entry};
use shardhost::wire::ctl::{ack_err, decode_body, route, CtlBody, CtlRequest, HOST_LABEL_PREFIX};

const HOST_ID: &str = "NFUZZ";

fuzz_target!(|data: &[u8]| {
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(first) = std::str::from_utf8(first) else { return };
    if let Some(key) = first.strip_prefix("kv:") {
        let _ = parse_entry(key, body);
        return;
    }
    let request = route("wasmbus.ctl", "fuzz", HOST_ID, &format!("wasmbus.ctl.fuzz.{first}"));
    match decode_body(&request, body) {
        Err(reason) => {
            assert!(!reason.is_empty());
            let ack = serde_json::to_vec(&ack_err(&reason)).expect("an ack serialises");
            let back: serde_json::Value = serde_json::from_slice(&ack).expect("an ack reads back");
            assert_eq!(back["accepted"], false);
            assert_eq!(back["error"].as_str(), Some(reason.as_str()));
        }
        Ok(decoded) => check(&request, decoded),
    }
});

fn check(request: &CtlRequest, decoded: CtlBody) {
    let auction = matches!(request, CtlRequest::AuctionActor | CtlRequest::AuctionProvider);
    match decoded {
        CtlBody::Unread => assert!(matches!(
            request,
            CtlRequest::PingHosts
                | CtlRequest::GetLinks
                | CtlRequest::GetClaims
                | CtlRequest::Inventory
                | CtlRequest::Config
                | CtlRequest::Unknown
        )),
        CtlBody::NoBid => assert!(auction),
        CtlBody::LinkPut(link) => {
            assert!(link.validate().is_ok());
            let stored = serde_json::to_vec(&link.to_json_with_id()).expect("a link serialises");
            match parse_entry(&link.kv_key(), &stored) {
                Ok(Entry::Link(back)) => assert_eq!(back, link),
                other => panic!("a stored link reads back as {other:?}"),
            }
        }
        CtlBody::Label { key, value } => {
            assert!(!key.is_empty() && !key.starts_with(HOST_LABEL_PREFIX));
            assert_eq!(value.is_some(), *request == CtlRequest::LabelPut);
        }
        CtlBody::AuctionProvider { link_name, .. } => assert!(!link_name.is_empty()),
        CtlBody::LaunchActor(cmd) => assert!(!cmd.actor_ref.is_empty() && cmd.count >= 1),
        CtlBody::ScaleActor(cmd) => {
            assert!(!cmd.actor_ref.is_empty());
            let _ = cmd.target();
        }
        CtlBody::LaunchProvider(cmd) => assert!(!cmd.link_name.is_empty()),
        CtlBody::StopProvider(cmd) => assert!(!cmd.link_name.is_empty()),
        CtlBody::RegistriesPut(_)
        | CtlBody::LinkDel(_)
        | CtlBody::AuctionActor { .. }
        | CtlBody::StopActor(_)
        | CtlBody::UpdateActor(_)
        | CtlBody::StopHost(_) => {}
    }
}
