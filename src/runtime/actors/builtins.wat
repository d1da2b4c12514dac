;; Builtin caller (waPC module name "wapc", like the 2021 logger fixture): logs through
;; wasmcloud:builtin:logging, then calls wasmcloud:builtin:numbergen with its own operation and
;; payload, and responds with numbergen's response (read with __host_response_len /
;; __host_response). A failed host call is reported with __guest_error(host error).
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_response" (func $host_response (param i32)))
  (import "wapc" "__host_response_len" (func $host_response_len (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (import "wapc" "__console_log" (func $console_log (param i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "wasmcloud:builtin:logging")      ;; 25 bytes
  (data (i32.const 48) "Logging.WriteLog")               ;; 16 bytes
  ;; msgpack {"level": "info", "text": "hello"}: 0x82 a5 level a4 info a4 text a5 hello
  (data (i32.const 80) "\82\a5level\a4info\a4text\a5hello") ;; 23 bytes
  (data (i32.const 112) "wasmcloud:builtin:numbergen")   ;; 27 bytes
  (data (i32.const 144) "builtins actor called")         ;; 21 bytes
  ;; Host response / error land at 4096; operation at 8192, payload after it.
  (func $fail (result i32)
    (call $host_error (i32.const 4096))
    (call $guest_error (i32.const 4096) (call $host_error_len))
    i32.const 0)
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (local $payload i32)
    (local.set $payload (i32.add (i32.const 8192) (local.get $op_len)))
    (call $guest_request (i32.const 8192) (local.get $payload))
    (call $console_log (i32.const 144) (i32.const 21))
    (if (i32.ne (call $host_call (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 25)
                                 (i32.const 48) (i32.const 16) (i32.const 80) (i32.const 23))
                (i32.const 1))
      (then (return (call $fail))))
    (if (i32.ne (call $host_call (i32.const 0) (i32.const 0) (i32.const 112) (i32.const 27)
                                 (i32.const 8192) (local.get $op_len) (local.get $payload) (local.get $payload_len))
                (i32.const 1))
      (then (return (call $fail))))
    (call $host_response (i32.const 4096))
    (call $guest_response (i32.const 4096) (call $host_response_len))
    i32.const 1))
