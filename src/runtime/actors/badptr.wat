;; Hostile actor: hands the host pointers outside its memory. The operation's first byte picks
;; the abuse: 'R' __guest_request at the end of memory, 'S' __guest_response with a huge length,
;; 'H' __host_call with a payload past memory, 'L' __console_log at -1, 'E' __host_error at -1.
(module
  (import "wasmbus" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_error" (func $host_error (param i32)))
  (import "wasmbus" "__console_log" (func $console_log (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param $op_len i32) (param $payload_len i32) (result i32)
    (local $op i32)
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $op (i32.load8_u (i32.const 1024)))
    (if (i32.eq (local.get $op) (i32.const 82))
      (then (call $guest_request (i32.const 65534) (i32.const 65534))))
    (if (i32.eq (local.get $op) (i32.const 83))
      (then (call $guest_response (i32.const 16) (i32.const -1))))
    (if (i32.eq (local.get $op) (i32.const 72))
      (then (drop (call $host_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4)
                                   (i32.const 0) (i32.const 4) (i32.const 65000) (i32.const 1000)))))
    (if (i32.eq (local.get $op) (i32.const 76))
      (then (call $console_log (i32.const -1) (i32.const 100))))
    (if (i32.eq (local.get $op) (i32.const 69))
      (then
        ;; a failed host call leaves an error; copying it to -1 is out of bounds
        (drop (call $host_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4)
                               (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 0)))
        (call $host_error (i32.const -1))))
    i32.const 1))
