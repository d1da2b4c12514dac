//! Signed test actors in WAT (wascap 0.11, the real signer of the 0.x era): echo, a caller that
//! forwards its payload through `__host_call`, and a kvcounter that increments through its
//! keyvalue link.

/// A wasmbus echo actor in WAT: fetches operation and payload with `__guest_request` and hands
/// the payload back with `__guest_response`. `$marker` makes distinct modules (revisions).
pub fn echo_actor_wat(marker: u32) -> String {
    format!(
        r#"(module
  (import "wasmbus" "__guest_request" (func $req (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (global $marker i32 (i32.const {marker}))
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (call $req (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
    (call $resp (i32.add (i32.const 1024) (local.get $op_len)) (local.get $msg_len))
    (i32.const 1))
  (func (export "__wasmbus_rpc_version") (result i32) (i32.const 1)))"#
    )
}

/// How to sign a test actor.
pub struct ActorSpec {
    pub marker: u32,
    pub caps: Vec<String>,
    pub call_alias: Option<String>,
    pub rev: i32,
    pub not_before_secs: Option<u64>,
    pub expires_secs: Option<u64>,
    /// Reuse a module key (for updates); a new one otherwise.
    pub subject: Option<wascap::prelude::KeyPair>,
}

impl Default for ActorSpec {
    fn default() -> Self {
        ActorSpec {
            marker: 1,
            caps: vec!["wasmcloud:httpserver".to_string()],
            call_alias: None,
            rev: 1,
            not_before_secs: None,
            expires_secs: None,
            subject: None,
        }
    }
}

/// A signed actor module and its public key.
pub struct SignedActor {
    pub bytes: Vec<u8>,
    pub key: String,
}

/// Sign the echo actor described by `spec` with a fresh account key.
pub fn signed_echo(spec: ActorSpec) -> SignedActor {
    let wat = echo_actor_wat(spec.marker);
    signed_wat(&wat, spec)
}

/// A wasmbus actor in WAT that forwards its payload with `__host_call(binding, namespace,
/// operation)` and responds with the reply, or with `__guest_error(host error)` when the call
/// fails. 3 MiB of memory: payloads up to 1.5 MiB each way (the chunking tests).
pub fn caller_actor_wat(binding: &str, namespace: &str, operation: &str) -> String {
    call_actor_wat(binding, namespace, operation, None)
}

/// A "kvcounter": on every invocation it calls `KeyValue.Increment` of its `wasmcloud:keyvalue`
/// link `default` with the msgpack `IncrementRequest {key, value: 1}` and answers with the
/// provider's reply (the new value, a msgpack i32), or a guest error when the call fails.
/// A signed [`caller_actor_wat`] that claims the contract it calls.
pub fn signed_caller(binding: &str, contract: &str, operation: &str) -> SignedActor {
    signed_wat(
        &caller_actor_wat(binding, contract, operation),
        ActorSpec {
            caps: vec![contract.into()],
            ..Default::default()
        },
    )
}

pub fn kvcounter_actor_wat(key: &str) -> String {
    #[derive(serde::Serialize)]
    struct IncrementRequest<'a> {
        key: &'a str,
        value: i32,
    }
    let payload = rmp_serde::to_vec_named(&IncrementRequest { key, value: 1 }).expect("msgpack");
    call_actor_wat("default", "wasmcloud:keyvalue", "KeyValue.Increment", Some(&payload))
}

/// The kvcounter of [`kvcounter_actor_wat`], signed with the `wasmcloud:keyvalue` capability.
pub fn signed_kvcounter(key: &str) -> SignedActor {
    signed_wat(
        &kvcounter_actor_wat(key),
        ActorSpec {
            caps: vec!["wasmcloud:keyvalue".to_string()],
            ..ActorSpec::default()
        },
    )
}

/// [`caller_actor_wat`]; with `fixed_payload` the call carries those bytes instead of the
/// invocation's payload.
fn call_actor_wat(binding: &str, namespace: &str, operation: &str, fixed_payload: Option<&[u8]>) -> String {
    let data = |offset: u32, text: &str| format!("(data (i32.const {offset}) \"{text}\")");
    let (payload_data, payload_ptr, payload_len) = match fixed_payload {
        Some(bytes) => {
            let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            (
                format!("(data (i32.const 512) \"{escaped}\")"),
                "(i32.const 512)".to_string(),
                format!("(i32.const {})", bytes.len()),
            )
        }
        None => (
            String::new(),
            "(local.get $payload)".to_string(),
            "(local.get $payload_len)".to_string(),
        ),
    };
    format!(
        r#"(module
  (import "wasmbus" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wasmbus" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_response" (func $host_response (param i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))
  (import "wasmbus" "__host_error" (func $host_error (param i32)))
  (import "wasmbus" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 48)
  {binding_data}
  {namespace_data}
  {operation_data}
  {payload_data}
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (local $payload i32)
    (local.set $payload (i32.add (i32.const 1024) (local.get $op_len)))
    (call $guest_request (i32.const 1024) (local.get $payload))
    (if (i32.ne (call $host_call (i32.const 16) (i32.const {binding_len}) (i32.const 128) (i32.const {namespace_len})
                                 (i32.const 384) (i32.const {operation_len}) {payload_ptr} {payload_len})
                (i32.const 1))
      (then
        (call $host_error (i32.const 1572864))
        (call $guest_error (i32.const 1572864) (call $host_error_len))
        (return (i32.const 0))))
    (call $host_response (i32.const 1572864))
    (call $guest_response (i32.const 1572864) (call $host_response_len))
    i32.const 1))"#,
        binding_data = data(16, binding),
        namespace_data = data(128, namespace),
        operation_data = data(384, operation),
        binding_len = binding.len(),
        namespace_len = namespace.len(),
        operation_len = operation.len(),
    )
}

/// Sign the module `wat` with the claims of `spec` and a fresh account key (wascap, the real
/// wasmCloud signer).
pub fn signed_wat(wat: &str, spec: ActorSpec) -> SignedActor {
    use wascap::jwt::{Actor, Claims};
    use wascap::prelude::KeyPair;
    let module = wat::parse_str(wat).expect("actor WAT");
    let account = KeyPair::new_account();
    let subject = spec.subject.unwrap_or_else(KeyPair::new_module);
    let claims = Claims::<Actor>::with_dates(
        format!("echo-{}", spec.marker),
        account.public_key(),
        subject.public_key(),
        Some(spec.caps),
        Some(vec!["test".to_string()]),
        spec.not_before_secs,
        spec.expires_secs,
        false,
        Some(spec.rev),
        Some(format!("0.{}.0", spec.rev)),
        spec.call_alias,
    );
    let bytes = wascap::wasm::embed_claims(&module, &claims, &account).expect("sign actor");
    super::capture_seed("claims", &bytes);
    if let Ok(jwt) = claims.encode(&account) {
        super::capture_seed("claims", jwt.as_bytes());
    }
    SignedActor {
        bytes,
        key: subject.public_key(),
    }
}

/// The HTTP actor of `loadtest/http_echo.wat` (status 200, `x-actor: wat`, the request payload
/// as its body), signed with the `wasmcloud:httpserver` claim.
pub fn signed_http_echo() -> SignedActor {
    signed_wat(include_str!("../../../loadtest/http_echo.wat"), ActorSpec::default())
}
