//! The wasmbus/waPC actor ABI (PROTOCOL §9): the host functions a guest imports (under both
//! `wasmbus` and `wapc`), the WASI preview1 stubs 0.x actors may import, the builtins served
//! without leaving the host (logging, numbergen), and [`HostCalls`] for everything else.
//!
//! Data plane: these functions run inside a guest call on a shard. Every pointer and length
//! comes from the guest and is checked against its memory; a bad one is an error (a trap that
//! retires the instance), never a panic. No locks, no tokio.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use wasmtime::{Caller, Engine, Extern, FuncType, Linker, Memory, Module, Val, ValType};

use crate::wire::trace::CallTrace;

use super::budget::{MemoryBudget, MemoryLimit};
use super::builtins::{builtin, BuiltinGrants};

/// Return code of `__host_call` on success (PROTOCOL §9.1).
pub const HOST_CALL_OK: i32 = 1;
/// Return code of `__host_call` on failure (waPC hosts return 0; guests only test for 1).
pub const HOST_CALL_FAILED: i32 = 0;

/// WASI errno values used by the stubs.
pub const WASI_ESUCCESS: i32 = 0;
pub const WASI_EBADF: i32 = 8;
pub const WASI_EINVAL: i32 = 28;
pub const WASI_ENOSYS: i32 = 52;
/// WASI import module name.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// Module names under which the wasmbus functions are provided.
pub const WASMBUS_MODULES: [&str; 2] = ["wasmbus", "wapc"];

// ---------------------------------------------------------------------------------------------
// Host calls leaving the host
// ---------------------------------------------------------------------------------------------

/// The future of one host call: the response bytes, or an error string for the guest.
///
/// It must be `Send` because wasmtime's async host functions require it. A glommio shard's
/// implementation (whose NATS futures hold `Rc`s) wraps its future in `AssertSend`, which is
/// sound because a shard's stores and their calls never leave the shard thread (TOOLCHAIN.md);
/// that invariant lives with the wrapper, on the shard side, not here. Choosing a boxed `Send`
/// future keeps this module free of `unsafe` and lets tokio tests use plain async blocks.
pub type HostCallFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;

/// Serves the `__host_call`s that are not builtins: calls to providers and other actors
/// (PROTOCOL §9.4 steps 2–5). Supplied by the caller of [`super::ActorPool::new`].
pub trait HostCalls: Send + Sync {
    /// `origin_actor` is the calling actor's key; `trace` the trace the calling invocation
    /// runs in (its outbound invocation is parented on it); the other fields are the guest's,
    /// unchanged.
    fn call<'a>(
        &'a self,
        origin_actor: &'a str,
        trace: Option<CallTrace>,
        binding: &'a str,
        namespace: &'a str,
        operation: &'a str,
        payload: Vec<u8>,
    ) -> HostCallFuture<'a>;
}

/// [`HostCalls`] for pools that live outside a shard (benches, tests): every call leaving the
/// host fails with a guest-visible error. Shards use `shard::calls::ShardHostCalls`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHostCalls;

impl HostCalls for NoHostCalls {
    fn call<'a>(
        &'a self,
        _origin_actor: &'a str,
        _trace: Option<CallTrace>,
        binding: &'a str,
        namespace: &'a str,
        operation: &'a str,
        _payload: Vec<u8>,
    ) -> HostCallFuture<'a> {
        let message = format!("calls leaving the host are not wired here ({binding}/{namespace}/{operation})");
        Box::pin(async move { Err(message) })
    }
}

// ---------------------------------------------------------------------------------------------
// Import table
// ---------------------------------------------------------------------------------------------

/// The type of one import we define.
#[derive(Debug, Clone, Copy)]
pub struct Sig {
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    /// For error messages.
    pub text: &'static str,
}

const I: ValType = ValType::I32;
const SIG_PP: Sig = Sig {
    params: &[I, I],
    results: &[],
    text: "(i32, i32) -> ()",
};
const SIG_P: Sig = Sig {
    params: &[I],
    results: &[],
    text: "(i32) -> ()",
};
const SIG_LEN: Sig = Sig {
    params: &[],
    results: &[I],
    text: "() -> i32",
};
const SIG_HOST_CALL: Sig = Sig {
    params: &[I, I, I, I, I, I, I, I],
    results: &[I],
    text: "(i32 × 8) -> i32",
};
const SIG_2_ERRNO: Sig = Sig {
    params: &[I, I],
    results: &[I],
    text: "(i32, i32) -> i32",
};
const SIG_4_ERRNO: Sig = Sig {
    params: &[I, I, I, I],
    results: &[I],
    text: "(i32, i32, i32, i32) -> i32",
};
const SIG_CLOCK: Sig = Sig {
    params: &[I, ValType::I64, I],
    results: &[I],
    text: "(i32, i64, i32) -> i32",
};
const SIG_0_ERRNO: Sig = Sig {
    params: &[],
    results: &[I],
    text: "() -> i32",
};

/// Every wasmbus import (PROTOCOL §9.1) and its type.
pub const WASMBUS_IMPORTS: [(&str, Sig); 9] = [
    ("__guest_request", SIG_PP),
    ("__guest_response", SIG_PP),
    ("__guest_error", SIG_PP),
    ("__host_call", SIG_HOST_CALL),
    ("__host_response", SIG_P),
    ("__host_response_len", SIG_LEN),
    ("__host_error", SIG_P),
    ("__host_error_len", SIG_LEN),
    ("__console_log", SIG_PP),
];

/// The WASI functions with real stubs; any other WASI function import is stubbed to ENOSYS.
pub const WASI_STUBS: [(&str, Sig); 10] = [
    ("fd_write", SIG_4_ERRNO),
    ("environ_sizes_get", SIG_2_ERRNO),
    ("environ_get", SIG_2_ERRNO),
    ("args_sizes_get", SIG_2_ERRNO),
    ("args_get", SIG_2_ERRNO),
    ("clock_time_get", SIG_CLOCK),
    ("random_get", SIG_2_ERRNO),
    ("proc_exit", SIG_P),
    ("fd_prestat_get", SIG_2_ERRNO),
    ("sched_yield", SIG_0_ERRNO),
];

/// What an import of a module is to us.
#[derive(Debug, Clone, Copy)]
pub enum ImportKind {
    /// One we define, with this type.
    Known(Sig),
    /// A WASI function we do not implement: stubbed to return ENOSYS.
    OtherWasi,
    /// A name under `wasmbus`/`wapc` that the ABI does not have.
    UnknownWasmbus,
    /// Any other module: refused.
    Foreign,
}

pub fn import_kind(module: &str, name: &str) -> ImportKind {
    let find = |table: &[(&str, Sig)]| table.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    if WASMBUS_MODULES.contains(&module) {
        find(&WASMBUS_IMPORTS).map_or(ImportKind::UnknownWasmbus, ImportKind::Known)
    } else if module == WASI_MODULE {
        find(&WASI_STUBS).map_or(ImportKind::OtherWasi, ImportKind::Known)
    } else {
        ImportKind::Foreign
    }
}

/// A WASI function can get the ENOSYS stub when it returns exactly one i32 (an errno).
pub fn can_stub_enosys(ty: &FuncType) -> bool {
    let mut results = ty.results();
    matches!((results.next(), results.next()), (Some(ValType::I32), None))
}

// ---------------------------------------------------------------------------------------------
// Per-instance state
// ---------------------------------------------------------------------------------------------

/// What all instances of one actor share.
pub struct ActorContext {
    pub actor_key: Arc<str>,
    /// The builtins among the actor's claimed capabilities.
    pub builtins: BuiltinGrants,
    pub host_calls: Arc<dyn HostCalls>,
    pub execution_deadline: Duration,
    pub memory_bytes_max: u64,
    /// The host-wide budget every instance's memory is reserved from.
    pub memory_budget: Arc<MemoryBudget>,
}

/// Host-side faults raised inside a guest call; they become the call's error and retire the
/// instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AbiFault {
    #[error("guest passed an out-of-bounds pointer to {0}")]
    OutOfBounds(&'static str),
    #[error("guest has no exported memory")]
    NoMemory,
    #[error("guest called proc_exit({0})")]
    ProcExit(i32),
    #[error("guest ran past its execution deadline")]
    DeadlineExceeded,
    #[error("guest called a WASI function that cannot be stubbed")]
    UnsupportedWasi,
}

/// The `Store` data of one instance: the call in progress and the ABI's pending values.
/// Buffers for operation and payload are reused across calls.
pub struct GuestState {
    pub actor: Arc<ActorContext>,
    /// The guest's exported memory, cached after instantiation.
    pub memory: Option<Memory>,
    pub operation: Vec<u8>,
    pub payload: Vec<u8>,
    pub guest_response: Option<Vec<u8>>,
    pub guest_error: Option<String>,
    pub host_response: Option<Vec<u8>>,
    pub host_error: Option<String>,
    /// When the current call (or instance initialisation) started; `None` between calls.
    pub call_started: Option<Instant>,
    pub deadline_exceeded: bool,
    pub memory_limit: MemoryLimit,
    /// The trace the current call runs in (its caller's, or the host's span for it).
    pub trace: Option<CallTrace>,
}

impl GuestState {
    pub fn new(actor: Arc<ActorContext>) -> GuestState {
        let bytes_max = usize::try_from(actor.memory_bytes_max).unwrap_or(usize::MAX);
        let memory_limit = MemoryLimit::new(bytes_max, Arc::clone(&actor.memory_budget));
        GuestState {
            actor,
            memory: None,
            operation: Vec::new(),
            payload: Vec::new(),
            guest_response: None,
            guest_error: None,
            host_response: None,
            host_error: None,
            call_started: None,
            deadline_exceeded: false,
            memory_limit,
            trace: None,
        }
    }

    /// Reset the per-call state and start the deadline clock.
    pub fn begin_call(&mut self, operation: &[u8], payload: &[u8], trace: Option<CallTrace>) {
        self.trace = trace;
        self.operation.clear();
        self.operation.extend_from_slice(operation);
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self.guest_response = None;
        self.guest_error = None;
        self.host_response = None;
        self.host_error = None;
        self.deadline_exceeded = false;
        self.memory_limit.denied = None;
        self.call_started = Some(Instant::now());
    }

    /// Whether the running call is past its deadline.
    pub fn past_deadline(&self) -> bool {
        self.call_started
            .is_some_and(|started| started.elapsed() >= self.actor.execution_deadline)
    }
}

// ---------------------------------------------------------------------------------------------
// Guest memory access (bounds-checked)
// ---------------------------------------------------------------------------------------------

fn memory_of(caller: &mut Caller<'_, GuestState>) -> wasmtime::Result<Memory> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::Error::new(AbiFault::NoMemory)),
    }
}

/// `[ptr, ptr + len)` as a range inside `size` bytes, or the fault naming `what`.
fn guest_range(ptr: i32, len: usize, size: usize, what: &'static str) -> wasmtime::Result<std::ops::Range<usize>> {
    // Guest pointers are u32 reinterpreted as i32.
    let start = ptr as u32 as usize;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(wasmtime::Error::new(AbiFault::OutOfBounds(what))),
    }
}

fn guest_len(len: i32) -> usize {
    len as u32 as usize
}

/// Copy `len` bytes at `ptr` out of guest memory.
fn read_guest(
    caller: &mut Caller<'_, GuestState>,
    ptr: i32,
    len: i32,
    what: &'static str,
) -> wasmtime::Result<Vec<u8>> {
    let memory = memory_of(caller)?;
    let data = memory.data(&*caller);
    let range = guest_range(ptr, guest_len(len), data.len(), what)?;
    Ok(data[range].to_vec())
}

/// Write one of the state's buffers into guest memory at `ptr`.
fn write_from_state(
    caller: &mut Caller<'_, GuestState>,
    ptr: i32,
    what: &'static str,
    pick: fn(&GuestState) -> &[u8],
) -> wasmtime::Result<()> {
    let memory = memory_of(caller)?;
    let (data, state) = memory.data_and_store_mut(caller);
    let bytes = pick(state);
    let range = guest_range(ptr, bytes.len(), data.len(), what)?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

fn len_i32(bytes: Option<&[u8]>) -> i32 {
    // Lengths come from guest memory (≤ 4 GiB) or host responses stored for it; a longer one
    // reads as -1 and the guest's copy fails its bounds check.
    bytes.map_or(0, |b| i32::try_from(b.len()).unwrap_or(-1))
}

// ---------------------------------------------------------------------------------------------
// Linker
// ---------------------------------------------------------------------------------------------

/// A linker for `module`: the wasmbus functions under both module names, the WASI stubs, and an
/// ENOSYS stub for each other WASI function the module imports (the module passed
/// [`super::engine::check_shape`], so each of those returns one i32).
pub fn linker_for(engine: &Engine, module: &Module) -> wasmtime::Result<Linker<GuestState>> {
    let mut linker = Linker::new(engine);
    for name in WASMBUS_MODULES {
        define_wasmbus(&mut linker, name)?;
    }
    define_wasi(&mut linker)?;
    for import in module.imports() {
        if import.module() != WASI_MODULE || WASI_STUBS.iter().any(|(n, _)| *n == import.name()) {
            continue;
        }
        if let wasmtime::ExternType::Func(ty) = import.ty() {
            let name = import.name().to_string();
            linker.func_new(
                WASI_MODULE,
                import.name(),
                ty,
                move |_caller, _params: &[Val], results: &mut [Val]| {
                    tracing::trace!(function = %name, "unimplemented WASI function: ENOSYS");
                    match results.first_mut() {
                        Some(slot) => {
                            *slot = Val::I32(WASI_ENOSYS);
                            Ok(())
                        }
                        None => Err(wasmtime::Error::new(AbiFault::UnsupportedWasi)),
                    }
                },
            )?;
        }
    }
    Ok(linker)
}

fn define_wasmbus(linker: &mut Linker<GuestState>, module: &str) -> wasmtime::Result<()> {
    linker.func_wrap(
        module,
        "__guest_request",
        |mut caller: Caller<'_, GuestState>, op_ptr: i32, payload_ptr: i32| -> wasmtime::Result<()> {
            write_from_state(&mut caller, op_ptr, "__guest_request", |s| &s.operation)?;
            write_from_state(&mut caller, payload_ptr, "__guest_request", |s| &s.payload)
        },
    )?;
    linker.func_wrap(
        module,
        "__guest_response",
        |mut caller: Caller<'_, GuestState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(&mut caller, ptr, len, "__guest_response")?;
            caller.data_mut().guest_response = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        module,
        "__guest_error",
        |mut caller: Caller<'_, GuestState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(&mut caller, ptr, len, "__guest_error")?;
            caller.data_mut().guest_error = Some(String::from_utf8_lossy(&bytes).into_owned());
            Ok(())
        },
    )?;
    linker.func_wrap(
        module,
        "__host_response",
        |mut caller: Caller<'_, GuestState>, ptr: i32| -> wasmtime::Result<()> {
            write_from_state(&mut caller, ptr, "__host_response", |s| {
                s.host_response.as_deref().unwrap_or_default()
            })
        },
    )?;
    linker.func_wrap(module, "__host_response_len", |caller: Caller<'_, GuestState>| -> i32 {
        len_i32(caller.data().host_response.as_deref())
    })?;
    linker.func_wrap(
        module,
        "__host_error",
        |mut caller: Caller<'_, GuestState>, ptr: i32| -> wasmtime::Result<()> {
            write_from_state(&mut caller, ptr, "__host_error", |s| {
                s.host_error.as_deref().map(str::as_bytes).unwrap_or_default()
            })
        },
    )?;
    linker.func_wrap(module, "__host_error_len", |caller: Caller<'_, GuestState>| -> i32 {
        len_i32(caller.data().host_error.as_deref().map(str::as_bytes))
    })?;
    linker.func_wrap(
        module,
        "__console_log",
        |mut caller: Caller<'_, GuestState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(&mut caller, ptr, len, "__console_log")?;
            let actor = &caller.data().actor.actor_key;
            tracing::debug!(actor = %actor, "{}", String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;
    linker.func_wrap_async(
        module,
        "__host_call",
        |mut caller: Caller<'_, GuestState>, args: (i32, i32, i32, i32, i32, i32, i32, i32)| {
            Box::new(async move { host_call(&mut caller, args).await })
        },
    )?;
    Ok(())
}

/// The strings of a host call; not UTF-8 is a guest-visible error, not a fault.
fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("host call {what} is not UTF-8"))
}

/// `__host_call` (PROTOCOL §9.3): builtins locally, everything else through [`HostCalls`].
async fn host_call(
    caller: &mut Caller<'_, GuestState>,
    (bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, pl_ptr, pl_len): (i32, i32, i32, i32, i32, i32, i32, i32),
) -> wasmtime::Result<i32> {
    let binding = read_guest(caller, bd_ptr, bd_len, "__host_call")?;
    let namespace = read_guest(caller, ns_ptr, ns_len, "__host_call")?;
    let operation = read_guest(caller, op_ptr, op_len, "__host_call")?;
    let payload = read_guest(caller, pl_ptr, pl_len, "__host_call")?;
    {
        let state = caller.data_mut();
        state.host_response = None;
        state.host_error = None;
    }
    let actor = Arc::clone(&caller.data().actor);
    let trace = caller.data().trace.clone();
    let result = match (
        utf8(binding, "binding"),
        utf8(namespace, "namespace"),
        utf8(operation, "operation"),
    ) {
        (Ok(binding), Ok(namespace), Ok(operation)) => {
            match builtin(&actor.actor_key, actor.builtins, &namespace, &operation, &payload) {
                Some(result) => result,
                None => {
                    actor
                        .host_calls
                        .call(&actor.actor_key, trace, &binding, &namespace, &operation, payload)
                        .await
                }
            }
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
    };
    let state = caller.data_mut();
    Ok(match result {
        Ok(response) => {
            state.host_response = Some(response);
            HOST_CALL_OK
        }
        Err(error) => {
            state.host_error = Some(error);
            HOST_CALL_FAILED
        }
    })
}

// ---------------------------------------------------------------------------------------------
// WASI preview1 stubs
// ---------------------------------------------------------------------------------------------

/// Write `bytes` at `ptr` in guest memory.
fn write_guest(
    caller: &mut Caller<'_, GuestState>,
    ptr: i32,
    bytes: &[u8],
    what: &'static str,
) -> wasmtime::Result<()> {
    let memory = memory_of(caller)?;
    let data = memory.data_mut(&mut *caller);
    let range = guest_range(ptr, bytes.len(), data.len(), what)?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

/// Most bytes one `fd_write` logs (the rest is reported written and dropped).
pub const WASI_FD_WRITE_LOG_BYTES_MAX: usize = 64 << 10;

fn fd_write(
    caller: &mut Caller<'_, GuestState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten_ptr: i32,
) -> wasmtime::Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(WASI_EBADF);
    }
    let memory = memory_of(caller)?;
    let data = memory.data(&*caller);
    let iov_count = guest_len(iovs_len);
    let table = guest_range(iovs, iov_count.saturating_mul(8), data.len(), "fd_write")?;
    let mut text = Vec::new();
    let mut written: u32 = 0;
    for iov in data[table].chunks_exact(8) {
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let range = guest_range(ptr, len as usize, data.len(), "fd_write")?;
        let room = WASI_FD_WRITE_LOG_BYTES_MAX.saturating_sub(text.len());
        text.extend_from_slice(&data[range.start..range.end.min(range.start + room)]);
        written = written.saturating_add(len);
    }
    let actor = &*caller.data().actor.actor_key;
    let line = String::from_utf8_lossy(&text);
    let line = line.trim_end();
    if fd == 1 {
        tracing::info!(actor, stream = "stdout", "{line}");
    } else {
        tracing::warn!(actor, stream = "stderr", "{line}");
    }
    write_guest(caller, nwritten_ptr, &written.to_le_bytes(), "fd_write")?;
    Ok(WASI_ESUCCESS)
}

fn define_wasi(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let m = WASI_MODULE;
    linker.func_wrap(
        m,
        "fd_write",
        |mut caller: Caller<'_, GuestState>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| {
            fd_write(&mut caller, fd, iovs, iovs_len, nwritten)
        },
    )?;
    // No environment and no arguments: both counts (and the buffer sizes) are zero.
    for (sizes, get) in [("environ_sizes_get", "environ_get"), ("args_sizes_get", "args_get")] {
        linker.func_wrap(
            m,
            sizes,
            |mut caller: Caller<'_, GuestState>, count_ptr: i32, size_ptr: i32| -> wasmtime::Result<i32> {
                write_guest(&mut caller, count_ptr, &0u32.to_le_bytes(), "sizes_get")?;
                write_guest(&mut caller, size_ptr, &0u32.to_le_bytes(), "sizes_get")?;
                Ok(WASI_ESUCCESS)
            },
        )?;
        linker.func_wrap(m, get, |_: Caller<'_, GuestState>, _: i32, _: i32| WASI_ESUCCESS)?;
    }
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut caller: Caller<'_, GuestState>, clock: i32, _precision: i64, time_ptr: i32| -> wasmtime::Result<i32> {
            let nanos = match clock {
                // realtime and monotonic (the wall clock is monotonic enough for a guest)
                0 | 1 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                _ => return Ok(WASI_EINVAL),
            };
            write_guest(&mut caller, time_ptr, &nanos.to_le_bytes(), "clock_time_get")?;
            Ok(WASI_ESUCCESS)
        },
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut caller: Caller<'_, GuestState>, buf: i32, len: i32| -> wasmtime::Result<i32> {
            let memory = memory_of(&mut caller)?;
            let data = memory.data_mut(&mut caller);
            let range = guest_range(buf, guest_len(len), data.len(), "random_get")?;
            rand::thread_rng().fill(&mut data[range]);
            Ok(WASI_ESUCCESS)
        },
    )?;
    linker.func_wrap(
        m,
        "proc_exit",
        |_: Caller<'_, GuestState>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(AbiFault::ProcExit(code)))
        },
    )?;
    // No preopened directories: EBADF ends wasi-libc's preopen scan.
    linker.func_wrap(m, "fd_prestat_get", |_: Caller<'_, GuestState>, _: i32, _: i32| {
        WASI_EBADF
    })?;
    linker.func_wrap(m, "sched_yield", |_: Caller<'_, GuestState>| WASI_ESUCCESS)?;
    Ok(())
}
