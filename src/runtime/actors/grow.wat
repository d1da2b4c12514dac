;; Memory hog: grows its memory 16 pages at a time until memory.grow fails, then touches the
;; byte just past its memory (an out-of-bounds store: the trap a real allocator failure ends in).
(module
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (block $full
      (loop $more
        (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (br $more)))
    (i32.store8 (i32.shl (memory.size) (i32.const 16)) (i32.const 1))
    i32.const 1))
