;; WASI user: writes "hello from wasi" to stdout with fd_write and calls fd_close (not stubbed:
;; ENOSYS); responds with [nwritten as u8, fd_write errno, fd_close errno, environ count].
(module
  (import "wasmbus" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from wasi\n")   ;; 16 bytes
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
    ;; iovec at 32: { ptr = 64, len = 16 }
    (i32.store (i32.const 32) (i32.const 64))
    (i32.store (i32.const 36) (i32.const 16))
    (i32.store8 (i32.const 1) (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
    (i32.store8 (i32.const 0) (i32.load (i32.const 40)))
    (i32.store8 (i32.const 2) (call $fd_close (i32.const 3)))
    (i32.store (i32.const 48) (i32.const 99))
    (drop (call $environ_sizes_get (i32.const 48) (i32.const 52)))
    (i32.store8 (i32.const 3) (i32.load (i32.const 48)))
    (call $guest_response (i32.const 0) (i32.const 4))
    i32.const 1))
