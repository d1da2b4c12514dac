//! What the seam asks of the kernel directly: whether io_uring can be used here (a real probe
//! ring, not a kernel-version guess), which CPUs this process may run on, and pinning a
//! thread to one of them.

use std::io;

/// Entries of the probe ring (the smallest the kernel accepts is 1).
const PROBE_RING_ENTRIES: u32 = 4;
/// `IORING_REGISTER_PROBE`: the opcode table glommio asks for first.
const IORING_REGISTER_PROBE: libc::c_uint = 8;
/// Operations a probe has room for (`io_uring_probe` holds 256 at most).
const PROBE_OPS: usize = 256;
/// Where the kernel says whether unprivileged processes may create rings.
const IO_URING_DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";
/// Locked memory glommio's reactor insists on (its `MIN_MEMLOCK_LIMIT`): below it every shard
/// fails to start. Docker's default `--ulimit memlock` is 64 KiB in many setups.
pub const IO_URING_MEMLOCK_BYTES_MIN: u64 = 512 << 10;
/// How to let io_uring through, for the messages that say it is blocked.
const IO_URING_HINT: &str = "to use io_uring, allow the io_uring_setup, io_uring_enter and io_uring_register \
     system calls (e.g. a seccomp profile that permits them) and set kernel.io_uring_disabled=0";

/// Closes a file descriptor when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was returned by io_uring_setup and is closed once, here.
        unsafe { libc::close(self.0) };
    }
}

/// Set up a ring, register a probe on it and enter it once — the three system calls the
/// io_uring backend depends on, each of which a seccomp filter or `kernel.io_uring_disabled`
/// may refuse — and check the locked-memory limit glommio needs. `Err` says what failed, why,
/// and how to allow it.
pub fn probe_io_uring() -> Result<(), String> {
    probe_rings()?;
    check_memlock(memlock_limit()?)
}

/// The soft `RLIMIT_MEMLOCK`, bytes (`u64::MAX` when unlimited).
fn memlock_limit() -> Result<u64, String> {
    // SAFETY: rlimit is plain data; getrlimit writes one into it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_MEMLOCK) failed: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit.rlim_cur
    })
}

/// Whether `limit` bytes of locked memory are enough for glommio.
fn check_memlock(limit: u64) -> Result<(), String> {
    if limit >= IO_URING_MEMLOCK_BYTES_MIN {
        return Ok(());
    }
    Err(format!(
        "RLIMIT_MEMLOCK is {} KiB and the io_uring backend needs at least {} KiB: raise it \
         (docker run --ulimit memlock=-1, LimitMEMLOCK=infinity in a systemd unit, ulimit -l)",
        limit >> 10,
        IO_URING_MEMLOCK_BYTES_MIN >> 10
    ))
}

fn probe_rings() -> Result<(), String> {
    // `struct io_uring_params` is 120 bytes; zeroed asks for defaults.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) (120 bytes) into `params`.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, PROBE_RING_ENTRIES, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(explain("io_uring_setup", io::Error::last_os_error()));
    }
    let fd = Fd(fd as libc::c_int);
    // `struct io_uring_probe` (16 bytes) followed by PROBE_OPS `io_uring_probe_op`s (8 each).
    let mut probe = vec![0u64; (16 + PROBE_OPS * 8) / 8];
    // SAFETY: the kernel writes at most the header and PROBE_OPS entries into `probe`.
    let registered = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd.0,
            IORING_REGISTER_PROBE,
            probe.as_mut_ptr(),
            PROBE_OPS as libc::c_uint,
        )
    };
    if registered < 0 {
        return Err(explain("io_uring_register", io::Error::last_os_error()));
    }
    // SAFETY: nothing to submit, nothing to wait for, no signal mask: reads no memory of ours.
    let entered = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd.0,
            0 as libc::c_uint,
            0 as libc::c_uint,
            0 as libc::c_uint,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    };
    if entered < 0 {
        return Err(explain("io_uring_enter", io::Error::last_os_error()));
    }
    Ok(())
}

/// The failed call, its error, and the likeliest cause.
fn explain(call: &str, error: io::Error) -> String {
    let cause = match error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => match std::fs::read_to_string(IO_URING_DISABLED_SYSCTL) {
            Ok(value) if value.trim() != "0" => format!("kernel.io_uring_disabled={}", value.trim()),
            _ => "blocked by a seccomp filter (Docker's and containerd's default profiles do this)".to_string(),
        },
        Some(libc::ENOSYS) => "this kernel has no io_uring, or a seccomp filter hides it".to_string(),
        Some(libc::EINVAL) => "this kernel's io_uring is too old (5.8 or newer is needed)".to_string(),
        Some(libc::ENOMEM) => "not enough locked memory for a ring (raise RLIMIT_MEMLOCK)".to_string(),
        _ => "unexpected error".to_string(),
    };
    format!("{call} failed: {error}: {cause}; {IO_URING_HINT}")
}

/// The CPUs this process may run on (its affinity mask: a container's cpuset, `taskset`), in
/// increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    let result = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = std::mem::size_of::<libc::cpu_set_t>() * 8;
    // SAFETY: CPU_ISSET reads the set for indices below its size.
    let cpus: Vec<usize> = (0..max).filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) }).collect();
    if cpus.is_empty() {
        return Err(io::Error::other("the affinity mask is empty"));
    }
    Ok(cpus)
}

/// Pin the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= std::mem::size_of::<libc::cpu_set_t>() * 8 {
        return Err(io::Error::other(format!("CPU {cpu} is past the largest CPU set")));
    }
    // SAFETY: `cpu` is within the set's size (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let result = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A TCP socket listening on `addr` with `SO_REUSEPORT` (every shard binds the same address;
/// the kernel spreads the connections) and `SO_REUSEADDR`, non-blocking, close-on-exec.
pub fn reuseport_listener(addr: std::net::SocketAddr, backlog: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain system calls on a descriptor this function owns from `socket` on.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else holds; the OwnedFd closes it on error.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: `one` outlives the call; the length is its size.
        let set = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = socket_address(addr);
    // SAFETY: `storage` holds a valid address of `len` bytes.
    let bound = unsafe {
        libc::bind(
            fd,
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: a bound stream socket.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// `addr` as the kernel's socket address and its length.
fn socket_address(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, usize) {
    // SAFETY: an all-zero sockaddr_storage is valid; it is filled for `addr`'s family below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len)
}

/// Stop a listening socket at once: `shutdown(2)` makes an accept in progress (an io_uring one
/// too, which holds its own reference to the socket and would keep it listening after a
/// close) return, and the kernel refuses new connections from then on.
pub fn shutdown_listener(fd: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: `fd` is a valid descriptor for the duration of the call.
    let _ = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = allowed_cpus().unwrap_or_default();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn too_little_locked_memory_is_refused_with_the_fix() {
        assert!(check_memlock(u64::MAX).is_ok());
        assert!(check_memlock(IO_URING_MEMLOCK_BYTES_MIN).is_ok());
        let text = check_memlock(64 << 10).unwrap_err();
        assert!(
            text.starts_with("RLIMIT_MEMLOCK is 64 KiB") && text.contains("--ulimit memlock"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_probe_names_its_call_and_cause() {
        let text = explain("io_uring_setup", io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(text.starts_with("io_uring_setup failed: "), "{text}");
        assert!(text.contains("no io_uring"), "{text}");
    }

    #[test]
    fn listeners_share_a_port_and_a_shut_down_one_refuses_at_once() {
        use std::os::fd::AsFd as _;
        let first = reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = std::net::TcpListener::from(first.try_clone().unwrap())
            .local_addr()
            .unwrap();
        // SO_REUSEPORT: a second listener (another shard's) binds the same port.
        let second = reuseport_listener(addr, 16).unwrap();
        drop(second);
        assert!(std::net::TcpStream::connect(addr).is_ok(), "listening");
        shutdown_listener(first.as_fd());
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "refused after the shutdown"
        );
    }
}
