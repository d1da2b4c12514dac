;; Imports from a module the host does not provide ("env"): refused at compile time.
(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))
