;; The load test's echo actor (wasmbus ABI), kept in step with src/runtime/actors/echo.wat
;; (the runtime's test actor) but owned here so the harness does not depend on test fixtures.
;; Echo actor (wasmbus ABI): fetches operation and payload with __guest_request into memory it
;; reserves, then dispatches on the operation's first byte:
;;   'C' ("Count")  -> responds with its call counter (a global, u32 little-endian)
;;   'F' ("Fail")   -> __guest_error(payload), returns 0
;;   'W' ("Wrap…")  -> calls the actor with call alias "loadtest/echo" (HttpServer.HandleRequest,
;;                     same payload) with __host_call and responds with its reply, or with
;;                     __guest_error(host error): the actor-to-actor scenario
;;   'K' ("Kv…")    -> calls its `wasmcloud:keyvalue` provider (link name "default") with
;;                     KeyValue.Get of the key "loadtest"; once the provider has answered,
;;                     responds with its own payload (so the generator's echo check still
;;                     holds), or with __guest_error(host error): the actor-to-provider
;;                     scenario (the actor must claim wasmcloud:keyvalue)
;;   anything else  -> __guest_response(payload)
(module
  (import "wasmbus" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wasmbus" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))
  (import "wasmbus" "__host_response" (func $host_response (param i32)))
  (import "wasmbus" "__host_error_len" (func $host_error_len (result i32)))
  (import "wasmbus" "__host_error" (func $host_error (param i32)))
  (memory (export "memory") 1)
  ;; __host_call's binding, namespace (the target's call alias) and operation.
  (data (i32.const 16) "default")
  (data (i32.const 32) "loadtest/echo")
  (data (i32.const 48) "HttpServer.HandleRequest")
  ;; The actor-to-provider call: namespace, operation and payload (msgpack str "loadtest").
  (data (i32.const 80) "wasmcloud:keyvalue")
  (data (i32.const 112) "KeyValue.Get")
  (data (i32.const 128) "\a8loadtest")
  (global $calls (mut i32) (i32.const 0))
  (global $heap i32 (i32.const 1024))
  (func (export "__wasmbus_rpc_version") (result i32) i32.const 1)
  ;; Grow memory so that [heap, heap + bytes) exists; trap if it cannot.
  (func $reserve (param $bytes i32)
    (local $pages i32)
    (local.set $pages
      (i32.sub
        (i32.shr_u (i32.add (i32.add (global.get $heap) (local.get $bytes)) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then unreachable)))))
  ;; __host_call(binding "default", namespace [ns, ns + ns_len), operation [op, op + op_len),
  ;; payload [payload, payload + len)). On success 1, and with $respond the reply (copied to
  ;; $out onwards) becomes this call's response; on failure 0, the host's error copied to $out
  ;; and made this call's error.
  (func $call (param $ns i32) (param $ns_len i32) (param $op i32) (param $op_len i32)
      (param $payload i32) (param $len i32) (param $out i32) (param $respond i32) (result i32)
    (local $out_len i32)
    (if (i32.eqz (call $host_call
          (i32.const 16) (i32.const 7) (local.get $ns) (local.get $ns_len) (local.get $op) (local.get $op_len)
          (local.get $payload) (local.get $len)))
      (then
        (local.set $out_len (call $host_error_len))
        (call $reserve (i32.sub (i32.add (local.get $out) (local.get $out_len)) (global.get $heap)))
        (call $host_error (local.get $out))
        (call $guest_error (local.get $out) (local.get $out_len))
        (return (i32.const 0))))
    (if (local.get $respond)
      (then
        (local.set $out_len (call $host_response_len))
        (call $reserve (i32.sub (i32.add (local.get $out) (local.get $out_len)) (global.get $heap)))
        (call $host_response (local.get $out))
        (call $guest_response (local.get $out) (local.get $out_len))))
    (i32.const 1))
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (local $payload i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (call $reserve (i32.add (local.get $op_len) (local.get $payload_len)))
    (local.set $payload (i32.add (global.get $heap) (local.get $op_len)))
    (call $guest_request (global.get $heap) (local.get $payload))
    (if (i32.gt_u (local.get $op_len) (i32.const 0))
      (then
        (if (i32.eq (i32.load8_u (global.get $heap)) (i32.const 67))
          (then
            (i32.store (i32.const 0) (global.get $calls))
            (call $guest_response (i32.const 0) (i32.const 4))
            (return (i32.const 1))))
        (if (i32.eq (i32.load8_u (global.get $heap)) (i32.const 70))
          (then
            (call $guest_error (local.get $payload) (local.get $payload_len))
            (return (i32.const 0))))
        (if (i32.eq (i32.load8_u (global.get $heap)) (i32.const 87))
          (then (return (call $call (i32.const 32) (i32.const 13) (i32.const 48) (i32.const 24)
            (local.get $payload) (local.get $payload_len) (i32.add (local.get $payload) (local.get $payload_len))
            (i32.const 1)))))
        (if (i32.eq (i32.load8_u (global.get $heap)) (i32.const 75))
          (then
            (if (i32.eqz (call $call (i32.const 80) (i32.const 18) (i32.const 112) (i32.const 12)
                  (i32.const 128) (i32.const 9) (i32.add (local.get $payload) (local.get $payload_len))
                  (i32.const 0)))
              (then (return (i32.const 0))))))))
    (call $guest_response (local.get $payload) (local.get $payload_len))
    i32.const 1))
