;; An HTTP actor for the built-in HTTP server's tests and the `http` load scenario: whatever it
;; is asked, it answers an `HttpResponse` (msgpack named map) with status 200, the header
;; `x-actor: wat`, and as its body the request payload it received (for
;; `HttpServer.HandleRequest`, the `HttpRequest` msgpack the server built). The response is the
;; 45-byte prefix at 1024 followed by the payload, which `__guest_request` writes right after it.
(module
  (import "wasmbus" "__guest_request" (func $req (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  ;; {"statusCode": 200, "header": {"x-actor": ["wat"]}, "body": bin32 <length>}
  (data (i32.const 1024) "\83\aastatusCode\cc\c8\a6header\81\a7x-actor\91\a3wat\a4body\c6")
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32) (local $need i32)
    ;; 1024 + 41 prefix bytes + 4 length bytes
    (local.set $msg (i32.const 1069))
    (local.set $need (i32.add (i32.add (local.get $msg) (local.get $msg_len)) (local.get $op_len)))
    (if (i32.gt_u (local.get $need) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.eq
              (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 16))
                                    (memory.size)))
              (i32.const -1))
          (then (unreachable)))))
    ;; the operation after the payload (unused), the payload after the prefix
    (call $req (i32.add (local.get $msg) (local.get $msg_len)) (local.get $msg))
    (i32.store8 (i32.const 1065) (i32.shr_u (local.get $msg_len) (i32.const 24)))
    (i32.store8 (i32.const 1066) (i32.shr_u (local.get $msg_len) (i32.const 16)))
    (i32.store8 (i32.const 1067) (i32.shr_u (local.get $msg_len) (i32.const 8)))
    (i32.store8 (i32.const 1068) (local.get $msg_len))
    (call $resp (i32.const 1024) (i32.add (i32.const 45) (local.get $msg_len)))
    (i32.const 1))
  (func (export "__wasmbus_rpc_version") (result i32) (i32.const 1)))
