;; Init exports: _start and wapc_init each bump a global once per instance; __guest_call
;; responds with [starts, inits].
(module
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (memory (export "memory") 1)
  (global $starts (mut i32) (i32.const 0))
  (global $inits (mut i32) (i32.const 0))
  (func (export "_start") (global.set $starts (i32.add (global.get $starts) (i32.const 1))))
  (func (export "wapc_init") (global.set $inits (i32.add (global.get $inits) (i32.const 1))))
  (func (export "__guest_call") (param i32 i32) (result i32)
    (i32.store8 (i32.const 0) (global.get $starts))
    (i32.store8 (i32.const 1) (global.get $inits))
    (call $guest_response (i32.const 0) (i32.const 2))
    i32.const 1))
