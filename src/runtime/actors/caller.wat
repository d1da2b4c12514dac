;; Actor-to-actor caller: forwards its payload to the actor with call alias "wasmcloud/ponger"
;; (binding "", operation "Ping.Ping") and responds with the reply, or with __guest_error(host
;; error) when the call fails.
(module
  (import "wasmbus" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wasmbus" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_response" (func $host_response (param i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))
  (import "wasmbus" "__host_error" (func $host_error (param i32)))
  (import "wasmbus" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "wasmcloud/ponger")   ;; 16 bytes
  (data (i32.const 48) "Ping.Ping")          ;; 9 bytes
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (local $payload i32)
    (local.set $payload (i32.add (i32.const 1024) (local.get $op_len)))
    (call $guest_request (i32.const 1024) (local.get $payload))
    (if (i32.ne (call $host_call (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 16)
                                 (i32.const 48) (i32.const 9) (local.get $payload) (local.get $payload_len))
                (i32.const 1))
      (then
        (call $host_error (i32.const 8192))
        (call $guest_error (i32.const 8192) (call $host_error_len))
        (return (i32.const 0))))
    (call $host_response (i32.const 8192))
    (call $guest_response (i32.const 8192) (call $host_response_len))
    i32.const 1))
