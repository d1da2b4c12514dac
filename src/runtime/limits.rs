//! [`RuntimeLimits`]: every knob of the actor runtime, with its unit, its default, its check,
//! and the virtual address space the pooling allocator reserves for it. Shared by both planes
//! (the control plane builds it from flags; the runtime sizes the engine from it). Pure code.

use std::fmt;

use super::RuntimeError;

/// One WebAssembly page.
pub const WASM_PAGE_BYTES: u64 = 64 << 10;
/// Host page size assumed by the reservation estimate (x86-64 and aarch64 Linux defaults).
pub const HOST_PAGE_BYTES: u64 = 4 << 10;
/// wasm32 cannot address more than 4 GiB.
pub const MEMORY_BYTES_MAX_LIMIT: u64 = 4 << 30;

/// Default linear memory per instance: real 0.x actors start at 17 pages (≈ 1.06 MiB) and grow
/// while decoding payloads (chunking starts at ≈ 900 KB), so 64 MiB leaves room for several
/// large payloads in flight inside one guest.
pub const MEMORY_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Default instance slots in the pooling allocator (all actors, all shards of the process) on
/// a machine with enough memory; smaller machines get fewer ([`instance_slots_for_memory`]).
pub const INSTANCE_SLOTS_TOTAL_DEFAULT: u32 = 1_000;
/// Fewest slots [`instance_slots_for_memory`] gives (one actor at count 64, or a few smaller).
pub const INSTANCE_SLOTS_MACHINE_MIN: u32 = 64;
/// Share of the machine's memory the default slots may commit: their fiber stacks and tables
/// are mapped read-write at engine start. wasmtime maps them `MAP_NORESERVE`, which the kernel
/// does not account under `vm.overcommit_memory=0`, but under strict accounting (`=2`, as on
/// hardened edge images) every byte counts against `CommitLimit` (swap + half the RAM by
/// default): 1,000 slots, 1.2 GB, cannot start on a 1 GiB node there. One eighth keeps a 1 GiB
/// node's host under 128 MiB of commit for its slots.
pub const INSTANCE_SLOTS_MEMORY_SHARE: u64 = 8;
/// Most slots we accept; beyond that the reservation check names the problem better.
pub const INSTANCE_SLOTS_TOTAL_MAX: u32 = 1 << 24;
/// Default wasm stack (wasmtime's default).
pub const MAX_WASM_STACK_BYTES_DEFAULT: usize = 512 << 10;
/// Smallest wasm stack we accept (TOOLCHAIN: 8–16 KiB still trapped correctly; real actors
/// need more).
pub const MAX_WASM_STACK_BYTES_MIN: usize = 16 << 10;
/// Default fiber stack: the wasm stack plus room for host functions (msgpack, tracing, the
/// host-call future) that run on the same fiber.
pub const ASYNC_STACK_BYTES_DEFAULT: usize = 1 << 20;
/// Stack the host functions need on top of the wasm stack inside a fiber.
pub const HOST_STACK_BYTES_MIN: usize = 64 << 10;
/// Default epoch period. Each tick is one atomic increment by the epoch thread, and a running
/// guest parks once per tick so its shard can poll I/O: 1 ms keeps a busy guest from delaying
/// its shard's socket by more than about a millisecond.
pub const EPOCH_TICK_MS_DEFAULT: u64 = 1;
/// Longest epoch period we accept (coarser makes the deadline and the parking meaningless).
pub const EPOCH_TICK_MS_MAX: u64 = 1_000;
/// Default invocations per instance before it is replaced: never (as the OTP host).
pub const INSTANCE_MAX_INVOCATIONS_DEFAULT: u64 = 0;
/// Default deadline of one call, also the default of `--max-execution-time`: the 0.82 host's
/// default (10 minutes).
pub const EXECUTION_DEADLINE_MS_DEFAULT: u64 = 600_000;
/// Guard region after each linear memory. Memories are reserved at `memory_bytes_max` (not
/// wasmtime's 4 GiB), so Cranelift emits bounds checks; the guard lets it fold static offsets
/// up to this size into one check.
pub const MEMORY_GUARD_BYTES: u64 = 2 << 20;
/// Function table elements per instance (Rust actors of the era have a few hundred).
pub const TABLE_ELEMENTS_MAX: usize = 20_000;
/// Bytes per table element (one pointer).
pub const TABLE_ELEMENT_BYTES: u64 = 8;
/// Default linear memory a warm instance may have grown to and still go back to its pool: one
/// that grew past it (a large payload once) is dropped on return, its pages released, and a
/// fresh one takes its place. Real 0.x actors start at ≈ 1.06 MiB.
pub const INSTANCE_MEMORY_KEEP_BYTES_DEFAULT: u64 = 16 << 20;
/// Linear memory kept resident (reset with `memset` instead of `madvise`) when an instance's
/// slot is freed, for hosts that replace instances often (`--instance-max-invocations` set):
/// the first 64 KiB, so a small actor's fresh instance takes no page faults on the pages its
/// predecessor touched. The memset also makes those pages resident where the instance only
/// read them (copy-on-write from the module image), and a freed slot keeps them until it is
/// used again: 4 MB more RSS after releasing 62 echo instances. Hosts whose instances live on
/// (the default) therefore keep none ([`memory_keep_resident_for`]).
pub const MEMORY_KEEP_RESIDENT_BYTES_DEFAULT: u64 = 64 << 10;

/// The `memory_keep_resident_bytes` a host should use: [`MEMORY_KEEP_RESIDENT_BYTES_DEFAULT`]
/// when instances are replaced after `instance_max_invocations` calls, 0 (every freed page
/// goes back to the system) when they live on and slots are freed only by idle releases,
/// retirements and stops.
pub fn memory_keep_resident_for(instance_max_invocations: u64) -> u64 {
    if instance_max_invocations == 0 {
        0
    } else {
        MEMORY_KEEP_RESIDENT_BYTES_DEFAULT
    }
}

const _: () = assert!(MAX_WASM_STACK_BYTES_DEFAULT + HOST_STACK_BYTES_MIN <= ASYNC_STACK_BYTES_DEFAULT);
const _: () = assert!(MEMORY_BYTES_MAX_DEFAULT.is_multiple_of(WASM_PAGE_BYTES));
const _: () = assert!(EPOCH_TICK_MS_DEFAULT <= EXECUTION_DEADLINE_MS_DEFAULT);

/// Limits of the actor runtime. The control plane builds one from its flags, calls
/// [`RuntimeLimits::validate`] (also done by [`super::Runtime::new`]) and logs its `Display`,
/// which states the virtual memory the pooling allocator reserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// Linear memory one instance may grow to, in bytes (a multiple of 64 KiB, ≤ 4 GiB).
    pub memory_bytes_max: u64,
    /// Instance slots of the pooling allocator: warm instances of every actor plus on-demand and
    /// fresh ones, across all shards. Each slot reserves a memory, a table and a fiber stack.
    pub instance_slots_total: u32,
    /// Native stack a guest may use, in bytes (`Config::max_wasm_stack`).
    pub max_wasm_stack_bytes: usize,
    /// Fiber stack of one running call, in bytes: the wasm stack plus host function frames.
    pub async_stack_bytes: usize,
    /// Period of the epoch thread, in ms: the granularity of parking and of the deadline.
    pub epoch_tick_ms: u64,
    /// Calls an instance serves before it is replaced; 0 = never (see the module doc).
    pub instance_max_invocations: u64,
    /// Wall-clock time one call may run, in ms, checked at each epoch tick while the guest
    /// executes (time awaiting a host call is not interrupted here; the caller bounds that).
    pub execution_deadline_ms: u64,
    /// Linear memory per freed slot reset by `memset` and kept resident, in bytes (0 = always
    /// `madvise`); wasmtime's `linear_memory_keep_resident`.
    pub memory_keep_resident_bytes: u64,
    /// Serve an actor's first start from the baseline compiler (Winch) while Cranelift
    /// compiles in the background (`--baseline-compiler`).
    pub baseline_compiler: bool,
    /// Linear memory all instances together may hold, in bytes (`--memory-budget-mib`);
    /// 0 = unbounded. See [`super::budget`].
    pub memory_budget_bytes: u64,
    /// Linear memory a warm instance may have grown to and still be reused, in bytes
    /// (`--instance-memory-keep-mib`); 0 = keep any. See [`super::ActorPool::give_back`].
    pub instance_memory_keep_bytes: u64,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            instance_slots_total: INSTANCE_SLOTS_TOTAL_DEFAULT,
            max_wasm_stack_bytes: MAX_WASM_STACK_BYTES_DEFAULT,
            async_stack_bytes: ASYNC_STACK_BYTES_DEFAULT,
            epoch_tick_ms: EPOCH_TICK_MS_DEFAULT,
            instance_max_invocations: INSTANCE_MAX_INVOCATIONS_DEFAULT,
            execution_deadline_ms: EXECUTION_DEADLINE_MS_DEFAULT,
            memory_keep_resident_bytes: MEMORY_KEEP_RESIDENT_BYTES_DEFAULT,
            baseline_compiler: false,
            memory_budget_bytes: 0,
            instance_memory_keep_bytes: INSTANCE_MEMORY_KEEP_BYTES_DEFAULT,
        }
    }
}

/// Default instance slots for a machine with `memory_bytes` of RAM: as many as keep the
/// slots' committed memory (fiber stacks and tables, see [`Reservation::committed_bytes`])
/// within 1/[`INSTANCE_SLOTS_MEMORY_SHARE`] of it, between [`INSTANCE_SLOTS_MACHINE_MIN`] and
/// [`INSTANCE_SLOTS_TOTAL_DEFAULT`]. 1 GiB → 110 slots; 10 GiB and more → 1,000.
pub fn instance_slots_for_memory(memory_bytes: u64) -> u32 {
    let one = RuntimeLimits {
        instance_slots_total: 1,
        ..RuntimeLimits::default()
    };
    let per_slot = one.reservation().map_or(u64::MAX, |r| r.committed_bytes()).max(1);
    let slots = (memory_bytes / INSTANCE_SLOTS_MEMORY_SHARE) / per_slot;
    u32::try_from(slots)
        .unwrap_or(u32::MAX)
        .clamp(INSTANCE_SLOTS_MACHINE_MIN, INSTANCE_SLOTS_TOTAL_DEFAULT)
}

/// The pooling allocator's virtual reservation, by consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// One memory slot: `memory_bytes_max` plus its guard.
    pub memory_slot_bytes: u64,
    /// All memory slots plus the guard before the first one.
    pub memories_bytes: u64,
    /// All fiber stacks, each with its guard page.
    pub stacks_bytes: u64,
    /// All function tables.
    pub tables_bytes: u64,
    pub total_bytes: u64,
    /// What one slot takes of it: a memory slot, a fiber stack with its guard page, a table.
    pub per_slot_bytes: u64,
}

impl Reservation {
    /// What wasmtime maps read-write at engine start (fiber stacks and tables; memories are
    /// mapped inaccessible until an instance uses them): under strict overcommit accounting
    /// the kernel counts it against its commit limit, though pages become resident only when
    /// touched.
    pub fn committed_bytes(&self) -> u64 {
        self.stacks_bytes.saturating_add(self.tables_bytes)
    }
}

impl RuntimeLimits {
    /// Check every limit and the relations between them; the message names the limit.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidLimits(m));
        if self.memory_bytes_max < WASM_PAGE_BYTES
            || self.memory_bytes_max > MEMORY_BYTES_MAX_LIMIT
            || !self.memory_bytes_max.is_multiple_of(WASM_PAGE_BYTES)
        {
            return bad(format!(
                "memory_bytes_max = {} must be a multiple of {WASM_PAGE_BYTES} between {WASM_PAGE_BYTES} and \
                 {MEMORY_BYTES_MAX_LIMIT}",
                self.memory_bytes_max
            ));
        }
        if self.instance_slots_total == 0 || self.instance_slots_total > INSTANCE_SLOTS_TOTAL_MAX {
            return bad(format!(
                "instance_slots_total = {} must be between 1 and {INSTANCE_SLOTS_TOTAL_MAX}",
                self.instance_slots_total
            ));
        }
        if self.max_wasm_stack_bytes < MAX_WASM_STACK_BYTES_MIN {
            return bad(format!(
                "max_wasm_stack_bytes = {} is below {MAX_WASM_STACK_BYTES_MIN}",
                self.max_wasm_stack_bytes
            ));
        }
        if self.async_stack_bytes < self.max_wasm_stack_bytes.saturating_add(HOST_STACK_BYTES_MIN) {
            return bad(format!(
                "async_stack_bytes = {} must exceed max_wasm_stack_bytes = {} by at least {HOST_STACK_BYTES_MIN} \
                 (host functions run on the same fiber)",
                self.async_stack_bytes, self.max_wasm_stack_bytes
            ));
        }
        if self.epoch_tick_ms == 0 || self.epoch_tick_ms > EPOCH_TICK_MS_MAX {
            return bad(format!(
                "epoch_tick_ms = {} must be between 1 and {EPOCH_TICK_MS_MAX}",
                self.epoch_tick_ms
            ));
        }
        if self.execution_deadline_ms < self.epoch_tick_ms {
            return bad(format!(
                "execution_deadline_ms = {} is shorter than one epoch tick ({} ms)",
                self.execution_deadline_ms, self.epoch_tick_ms
            ));
        }
        if self.reservation().is_none() {
            return bad("the pooling reservation overflows 64 bits".to_string());
        }
        Ok(())
    }

    /// The virtual address space the pooling allocator reserves for these limits (an estimate
    /// that follows wasmtime 48's slab layout: slots × (memory + guard) + one leading guard,
    /// one fiber stack + guard page per slot, one table per slot). `None` on overflow.
    pub fn reservation(&self) -> Option<Reservation> {
        let slots = u64::from(self.instance_slots_total);
        let memory_slot_bytes = self.memory_bytes_max.checked_add(MEMORY_GUARD_BYTES)?;
        let memories_bytes = slots.checked_mul(memory_slot_bytes)?.checked_add(MEMORY_GUARD_BYTES)?;
        let stack_bytes = u64::try_from(self.async_stack_bytes)
            .ok()?
            .checked_add(HOST_PAGE_BYTES)?;
        let stacks_bytes = slots.checked_mul(stack_bytes)?;
        let table_bytes = u64::try_from(TABLE_ELEMENTS_MAX)
            .ok()?
            .checked_mul(TABLE_ELEMENT_BYTES)?;
        let tables_bytes = slots.checked_mul(table_bytes)?;
        let total_bytes = memories_bytes.checked_add(stacks_bytes)?.checked_add(tables_bytes)?;
        let per_slot_bytes = memory_slot_bytes.checked_add(stack_bytes)?.checked_add(table_bytes)?;
        Some(Reservation {
            per_slot_bytes,
            memory_slot_bytes,
            memories_bytes,
            stacks_bytes,
            tables_bytes,
            total_bytes,
        })
    }
}

impl fmt::Display for RuntimeLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory_bytes_max={} instance_slots_total={} max_wasm_stack_bytes={} async_stack_bytes={} \
             epoch_tick_ms={} instance_max_invocations={} execution_deadline_ms={} memory_keep_resident_bytes={} baseline_compiler={} \
             memory_budget_bytes={} instance_memory_keep_bytes={}",
            self.memory_bytes_max,
            self.instance_slots_total,
            self.max_wasm_stack_bytes,
            self.async_stack_bytes,
            self.epoch_tick_ms,
            self.instance_max_invocations,
            self.execution_deadline_ms,
            self.memory_keep_resident_bytes,
            self.baseline_compiler,
            self.memory_budget_bytes,
            self.instance_memory_keep_bytes
        )?;
        match self.reservation() {
            Some(r) => write!(
                f,
                "; virtual reservation {} bytes (memories {}, fiber stacks {}, tables {}; committed at start {})",
                r.total_bytes,
                r.memories_bytes,
                r.stacks_bytes,
                r.tables_bytes,
                r.committed_bytes()
            ),
            None => write!(f, "; virtual reservation overflows 64 bits"),
        }
    }
}
