;; Trapping actor: __guest_call executes `unreachable`.
(module
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    unreachable))
