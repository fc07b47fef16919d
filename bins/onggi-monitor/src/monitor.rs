//! The monitor itself: set up, copy the pipes into the log until the container is
//! gone, write the exit file, hand over to `--on-exit`.

use crate::args::{self, ArgError, Config};
use crate::exitfile::{self, ExitStatus};
use crate::json::{self, Cursor, Put, Stream};
use crate::lines::LineSplitter;
use crate::logfile::{LogFile, NAME_LEN};
use crate::sys::{self, Errno, Fd, PollFd, ProcessArgs, Time};

/// Size of the one read buffer both pipes share.
const READ_BUF: usize = 8 << 10;
/// Size of the log file's write buffer.
const WRITE_BUF: usize = 8 << 10;
/// Longest log record; a longer line is split (Docker's limit too).
const MAX_LINE: usize = 16 << 10;
/// After the init has exited, stop reading pipes that stay silent this long: they are
/// held open by an orphan that outlived the init (only possible without a PID
/// namespace; in one, the kernel kills the rest when the init dies).
const DRAIN_IDLE_MS: i64 = 1000;
/// After the init has exited, stop reading after this long in any case.
const DRAIN_MAX_MS: i64 = 5000;

/// Signals the monitor ignores: it outlives the command line that started it and its
/// terminal (SIGINT, SIGHUP), writes to pipes and files that may go away (SIGPIPE,
/// SIGXFSZ at `RLIMIT_FSIZE`: a failed write is handled, not fatal), and is not the
/// way to stop a container (SIGTERM: the engine stops containers through the runtime).
const IGNORED: [i32; 5] = [
    sys::SIGINT,
    sys::SIGHUP,
    sys::SIGPIPE,
    sys::SIGTERM,
    sys::SIGXFSZ,
];

/// Exit code for a refused command line or an impossible setup.
const EXIT_USAGE: i32 = 2;
/// Exit code when the `--on-exit` program cannot be executed (as a shell's).
const EXIT_NOT_EXECUTED: i32 = 127;

/// Run the monitor with the process's arguments; never returns.
pub fn main(argv: &ProcessArgs) -> ! {
    let cfg = match args::parse(argv.iter()) {
        Ok(cfg) => cfg,
        Err(ArgError::Help) => {
            let _ = sys::write_all(1, args::USAGE);
            sys::exit(0)
        }
        Err(e) => {
            let mut buf = [0u8; 512];
            let mut msg = Cursor::new(&mut buf);
            msg.put(b"onggi-monitor: ");
            e.describe(&mut msg);
            msg.put(b"\n");
            let _ = sys::write_all(2, msg.into_bytes());
            let _ = sys::write_all(2, args::USAGE);
            sys::exit(EXIT_USAGE)
        }
    };
    let code = run(&cfg, argv);
    sys::exit(code)
}

/// Everything the loop needs, made by [`setup`].
struct Monitor<'a> {
    /// The container's init.
    init: i32,
    signals: Fd,
    pipes: [Pipe<'a>; 2],
    log: LogFile<'a>,
    read_buf: &'a mut [u8],
    /// How and when the init ended, once it has.
    exited: Option<(ExitStatus, Time)>,
}

/// One of the container's output pipes.
struct Pipe<'a> {
    /// `None` before it was given or after end of file.
    fd: Option<Fd>,
    stream: Stream,
    lines: LineSplitter<'a>,
}

/// A setup step that failed.
#[derive(Debug, Clone, Copy)]
enum SetupError {
    CloseFds(Errno),
    Chdir(Errno),
    Signals(Errno),
    CheckChild(Errno),
    NotAChild(i32),
    Pipe(i32, Errno),
    Memory(Errno),
}

fn run(cfg: &Config, argv: &ProcessArgs) -> i32 {
    let mut m = match setup(cfg) {
        Ok(m) => m,
        Err(e) => {
            report_setup_error(cfg, e);
            return EXIT_USAGE;
        }
    };
    m.copy_until_exit();
    let Monitor {
        log, pipes, exited, ..
    } = m;
    drop(pipes);
    // The log is closed; its scratch space for file names serves the exit file.
    let names = log.into_names();
    let (status, at) = match exited {
        Some(exit) => exit,
        // The loop only ends without an exit when poll failed: wait for it directly.
        None => {
            let status = sys::wait_for(cfg.pid)
                .ok()
                .and_then(ExitStatus::from_wait_status);
            (
                status.unwrap_or(ExitStatus {
                    code: 255,
                    signal: None,
                }),
                sys::now(),
            )
        }
    };
    if let Err(e) = exitfile::write(cfg.exit_file, status, at, names) {
        let (step, errno) = e.step();
        report(
            cfg,
            &[b"exit file ", cfg.exit_file.to_bytes(), b": ", step],
            errno,
        );
    }
    match cfg.on_exit {
        Some(program) => {
            restore_signals();
            let errno = argv.exec_from(program);
            report(cfg, &[b"--on-exit: execve"], errno);
            EXIT_NOT_EXECUTED
        }
        None => 0,
    }
}

/// Prepare the process, in order: every step assumes the ones before it.
fn setup<'a>(cfg: &Config<'a>) -> Result<Monitor<'a>, SetupError> {
    // Descriptors 0-2 first: if one were closed, the next open would take its number
    // and a message meant for stderr would land in the log.
    open_stdio_on_dev_null();
    // Keep only the pipes we were given: a stray descriptor (a write end of those very
    // pipes, say) would keep them from ever reaching end of file.
    close_other_fds(cfg).map_err(SetupError::CloseFds)?;
    // Adopt them before anything else is opened: had the engine named a closed
    // descriptor, a new one could take its number and be read as a pipe.
    let stdout = adopt_pipe(cfg.stdout_fd)?;
    let stderr = adopt_pipe(cfg.stderr_fd)?;
    // Do not keep the engine's working directory (and its mount) busy.
    sys::chdir(c"/").map_err(SetupError::Chdir)?;
    let signals = setup_signals().map_err(SetupError::Signals)?;
    // Only now that SIGCHLD is queued on the signalfd: an init that exited earlier is a
    // zombie child, found by the first reap.
    if !sys::is_child(cfg.pid).map_err(SetupError::CheckChild)? {
        return Err(SetupError::NotAChild(cfg.pid));
    }
    // The buffers, in one mapping: a page costs memory only once it is touched.
    let mem = sys::anonymous_memory(READ_BUF + WRITE_BUF + 2 * MAX_LINE + 2 * NAME_LEN)
        .map_err(SetupError::Memory)?;
    let (read_buf, rest) = mem.split_at_mut(READ_BUF);
    let (write_buf, rest) = rest.split_at_mut(WRITE_BUF);
    let (stdout_line, rest) = rest.split_at_mut(MAX_LINE);
    let (stderr_line, names) = rest.split_at_mut(MAX_LINE);
    let pipes = [
        Pipe::new(stdout, Stream::Stdout, stdout_line),
        Pipe::new(stderr, Stream::Stderr, stderr_line),
    ];
    let (log, err) = LogFile::open(cfg.log, cfg.rotation, write_buf, names);
    if let Some(errno) = err {
        // Not fatal: the container keeps running and its output is drained, unlogged.
        report(cfg, &[b"log ", cfg.log.to_bytes(), b": open"], errno);
    }
    Ok(Monitor {
        init: cfg.pid,
        signals,
        pipes,
        log,
        read_buf,
        exited: None,
    })
}

fn open_stdio_on_dev_null() {
    for fd in 0..=2 {
        if !sys::is_open(fd) {
            // open returns the lowest free number: this one. The descriptor must stay
            // open for the life of the process, so it is leaked on purpose.
            if let Ok(null) = sys::open(c"/dev/null", sys::O_RDWR, 0) {
                core::mem::forget(null);
            }
        }
    }
}

/// Close every descriptor from 3 up except the named pipes.
fn close_other_fds(cfg: &Config) -> Result<(), Errno> {
    let mut keep = [cfg.stdout_fd, cfg.stderr_fd].map(|fd| fd.unwrap_or(-1));
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep {
        if fd >= first as i32 {
            if fd > first as i32 {
                sys::close_range(first, fd as u32 - 1)?;
            }
            first = fd as u32 + 1;
        }
    }
    sys::close_range(first, u32::MAX)
}

/// Ignore the signals in [`IGNORED`], and turn SIGCHLD into a readable descriptor.
fn setup_signals() -> Result<Fd, Errno> {
    for sig in IGNORED {
        sys::ignore_signal(sig)?;
    }
    // SIGCHLD ignored (inherited through execve) would make the kernel reap children
    // itself, and the init's exit status would be lost.
    sys::default_signal(sys::SIGCHLD)?;
    // Replace whatever mask was inherited: only SIGCHLD is blocked, to be read from the
    // signalfd.
    sys::set_blocked_signals(&[sys::SIGCHLD])?;
    sys::signalfd(&[sys::SIGCHLD])
}

/// Undo [`setup_signals`] before `execve`: dispositions set to ignore and the signal
/// mask are inherited, and the `--on-exit` program should start like any program.
fn restore_signals() {
    for sig in IGNORED {
        let _ = sys::default_signal(sig);
    }
    let _ = sys::set_blocked_signals(&[]);
}

/// Take ownership of a pipe named on the command line.
fn adopt_pipe(fd: Option<i32>) -> Result<Option<Fd>, SetupError> {
    let Some(raw) = fd else { return Ok(None) };
    if !sys::is_open(raw) {
        return Err(SetupError::Pipe(raw, sys::EBADF));
    }
    // SAFETY: the descriptor is open, so it was inherited (nothing has been opened
    // since the other descriptors were closed, but 0-2, which `parse` refuses); it was
    // named on the command line for this stream alone (`parse` refuses one number for
    // both), and this is the only place that adopts it.
    #[allow(unsafe_code)]
    let fd = unsafe { Fd::adopt(raw) };
    // Non-blocking: a read after poll must never wait. Close-on-exec: the --on-exit
    // program must not hold the pipes.
    sys::set_nonblocking_cloexec(&fd).map_err(|e| SetupError::Pipe(raw, e))?;
    Ok(Some(fd))
}

impl<'a> Pipe<'a> {
    fn new(fd: Option<Fd>, stream: Stream, line: &'a mut [u8]) -> Self {
        Pipe {
            fd,
            stream,
            lines: LineSplitter::new(line),
        }
    }

    fn poll_fd(&self) -> PollFd {
        PollFd {
            fd: self.fd.as_ref().map_or(-1, Fd::raw),
            events: sys::POLLIN,
            revents: 0,
        }
    }

    /// Read once (for fairness between the two pipes) and log what came.
    fn read_into(&mut self, buf: &mut [u8], log: &mut LogFile) {
        let Some(fd) = &self.fd else { return };
        match sys::read(fd, buf) {
            Ok(0) => self.close(log),
            Ok(n) => {
                let stream = self.stream;
                self.lines.feed(&buf[..n], sys::now(), &mut |line, time| {
                    log.record(stream, line, time)
                });
            }
            Err(sys::EAGAIN) | Err(sys::EINTR) => {}
            Err(_) => self.close(log),
        }
    }

    /// End of file: log the last partial line and close.
    fn close(&mut self, log: &mut LogFile) {
        let stream = self.stream;
        self.lines
            .finish(&mut |line, time| log.record(stream, line, time));
        self.fd = None;
    }
}

impl Monitor<'_> {
    /// The loop: wait for output or SIGCHLD; log output, reap children. Ends when the
    /// init has exited and both pipes are at end of file (or silent, see
    /// [`DRAIN_IDLE_MS`]).
    fn copy_until_exit(&mut self) {
        // The init may have exited before the signalfd existed.
        self.reap();
        let mut draining_since = None;
        loop {
            let timeout = match self.exited {
                None => -1,
                Some(_) => {
                    let since = *draining_since.get_or_insert_with(sys::monotonic_ms);
                    let left = DRAIN_MAX_MS - (sys::monotonic_ms() - since);
                    if left <= 0 || self.pipes.iter().all(|p| p.fd.is_none()) {
                        break;
                    }
                    left.min(DRAIN_IDLE_MS) as i32
                }
            };
            let mut fds = [
                PollFd {
                    fd: self.signals.raw(),
                    events: sys::POLLIN,
                    revents: 0,
                },
                self.pipes[0].poll_fd(),
                self.pipes[1].poll_fd(),
            ];
            match sys::poll(&mut fds, timeout) {
                Ok(0) => break, // silent pipes after the init's exit
                Ok(_) => {}
                Err(sys::EINTR) => continue,
                Err(_) => break,
            }
            if fds[0].revents != 0 {
                sys::drain_signalfd(&self.signals);
                self.reap();
            }
            for (pipe, pfd) in self.pipes.iter_mut().zip(&fds[1..]) {
                if pfd.revents != 0 {
                    pipe.read_into(self.read_buf, &mut self.log);
                }
            }
            self.log.flush();
        }
        for pipe in &mut self.pipes {
            if pipe.fd.is_some() {
                pipe.close(&mut self.log);
            }
        }
        self.log.flush();
    }

    /// Reap every child that has exited: the init (remember how it ended) and any
    /// orphan the kernel reparented to us as the subreaper (ignore it).
    fn reap(&mut self) {
        loop {
            match sys::reap_any() {
                Ok(Some((pid, status))) => {
                    if pid == self.init {
                        if let Some(st) = ExitStatus::from_wait_status(status) {
                            self.exited = Some((st, sys::now()));
                        }
                    }
                }
                Err(sys::EINTR) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// Write `onggi-monitor[ID]: PARTS...: errno N` to stderr.
fn report(cfg: &Config, parts: &[&[u8]], errno: Errno) {
    let mut buf = [0u8; 512];
    let mut msg = Cursor::new(&mut buf);
    msg.put(b"onggi-monitor[");
    json::put_escaped(&mut msg, cfg.id.to_bytes());
    msg.put(b"]: ");
    for part in parts {
        json::put_escaped(&mut msg, part);
    }
    msg.put(b": errno ");
    json::put_int(&mut msg, errno.0.into());
    msg.put(b"\n");
    let _ = sys::write_all(2, msg.into_bytes());
}

fn report_setup_error(cfg: &Config, e: SetupError) {
    let mut num = [0u8; 12];
    let (what, errno): (&[&[u8]], Errno) = match e {
        SetupError::CloseFds(e) => (&[b"close_range"], e),
        SetupError::Chdir(e) => (&[b"chdir /"], e),
        SetupError::Signals(e) => (&[b"signal setup"], e),
        SetupError::CheckChild(e) => (&[b"waitid --pid"], e),
        SetupError::NotAChild(pid) => {
            let mut n = Cursor::new(&mut num);
            json::put_int(&mut n, pid.into());
            (
                &[b"--pid ", n.into_bytes(), b": not a child of this process"],
                sys::ECHILD,
            )
        }
        SetupError::Pipe(fd, e) => {
            let mut n = Cursor::new(&mut num);
            json::put_int(&mut n, fd.into());
            (&[b"pipe fd ", n.into_bytes(), b": fcntl"], e)
        }
        SetupError::Memory(e) => (&[b"mmap buffers"], e),
    };
    report(cfg, what, errno);
}
