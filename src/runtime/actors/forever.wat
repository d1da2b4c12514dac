;; Runaway actor: __guest_call never returns.
(module
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (loop $spin (br $spin))
    i32.const 1))
