//! `cargo xtask fetch-mnist [--fashion] [--from DIR] [--dest DIR]`: puts the
//! four MNIST (or Fashion-MNIST) `.gz` files into a folder, verified by MD5.
//!
//! Paths: without `--dest` the files go to `data/mnist` (or
//! `data/fashion-mnist`) in the project root, wherever the command is typed.
//! An explicit `--from` or `--dest` is a path like any other on a command
//! line: a relative one is taken relative to the directory the command was
//! typed in, not the project root. (From the root, as CI runs it, both read
//! the same.)
//!
//! For each file: a verified file at the destination is kept; one that does
//! not verify is an error (it is never overwritten: delete it yourself); a
//! missing one is copied from `--from` or downloaded from the public mirrors
//! in order, three tries per mirror with backoff. The bytes go to
//! `<name>.part`, which is fsynced and checked against the MD5 before it is
//! renamed to `<name>`; on any failure the `.part` is removed, so a final
//! name only ever holds a verified file.

use std::{
    fmt, fs,
    io::{self, IsTerminal, Read, Write},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};

/// Flags of `fetch-mnist`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fetch Fashion-MNIST instead of MNIST.
    #[arg(long)]
    fashion: bool,
    /// Copy the files from this folder instead of downloading them (relative
    /// paths are relative to the current directory).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Put the files here [default: data/mnist or data/fashion-mnist in the
    /// project root] (relative paths are relative to the current directory).
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,
}

/// One data set: its four files with their MD5s, where it goes, where it comes from.
#[derive(Debug)]
pub struct Dataset {
    /// Destination relative to the project root when `--dest` is not given.
    pub default_dest: &'static str,
    /// `(file name, MD5 in lowercase hex)` of the four files (SPEC §9).
    pub files: [(&'static str, &'static str); 4],
    /// Base URLs tried in order; a file's URL is base + file name.
    pub mirrors: &'static [&'static str],
}

/// MNIST (LeCun, Cortes and Burges), as mirrored by PyTorch's torchvision.
pub const MNIST: Dataset = Dataset {
    default_dest: "data/mnist",
    files: [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    mirrors: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
};

/// Fashion-MNIST (Xiao, Rasul and Vollgraf), from Zalando's own bucket.
pub const FASHION_MNIST: Dataset = Dataset {
    default_dest: "data/fashion-mnist",
    files: [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
};

/// Tries per mirror before moving to the next one.
const TRIES_PER_MIRROR: u32 = 3;

/// Runs `fetch-mnist`; `user_dir` is where the command was typed.
pub fn run(args: Args, user_dir: &Path, root: &Path) -> Result<()> {
    let dataset = if args.fashion { &FASHION_MNIST } else { &MNIST };
    let (dest, shown) = match &args.dest {
        Some(d) => (user_dir.join(d), d.display().to_string()),
        None => (root.join(dataset.default_dest), dataset.default_dest.to_string()),
    };
    let from = args.from.as_ref().map(|f| (user_dir.join(f), f.clone()));
    let agent;
    let source = match &from {
        Some((abs, shown)) => Source::Dir { path: abs, shown },
        None => {
            agent = http_agent();
            Source::Mirrors {
                urls: dataset.mirrors,
                agent: &agent,
            }
        }
    };
    fetch(&dest, &shown, &dataset.files, &source)?;
    Ok(())
}

/// Where missing files come from.
#[derive(Debug)]
enum Source<'a> {
    /// A local folder holding the files under their usual names.
    Dir { path: &'a Path, shown: &'a Path },
    /// Base URLs, tried in order, and the client to use.
    Mirrors {
        urls: &'a [&'a str],
        agent: &'a ureq::Agent,
    },
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// It was already there and verified.
    Present,
    /// It was copied from `--from`.
    Copied,
    /// It was downloaded from this URL.
    Downloaded(String),
}

/// Makes `files` present and verified in `dest` (shown to the user as
/// `shown`), taking missing ones from `source`. Returns one action per file.
fn fetch(dest: &Path, shown: &str, files: &[(&str, &str)], source: &Source<'_>) -> Result<Vec<Action>> {
    let shown_file = |name: &str| Path::new(shown).join(name).display().to_string();

    // First look at what is already there, so that a bad file stops us
    // before anything is fetched.
    let mut present = Vec::with_capacity(files.len());
    let mut bad = Vec::new();
    for &(name, expected) in files {
        let path = dest.join(name);
        match fs::metadata(&path) {
            Ok(_) => {
                let actual = md5_file(&path).with_context(|| format!("cannot read {}", shown_file(name)))?;
                if actual == expected {
                    present.push(true);
                } else {
                    bad.push(format!(
                        "{} exists but does not verify (MD5 mismatch)\n  expected {expected}\n  actual   {actual}",
                        shown_file(name)
                    ));
                    present.push(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => present.push(false),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", shown_file(name)));
            }
        }
    }
    if !bad.is_empty() {
        let (it_was, it) = if bad.len() == 1 {
            ("It was", "it")
        } else {
            ("They were", "them")
        };
        bail!(
            "{}\n{it_was} left untouched: delete {it} and run the command again to re-fetch {it}",
            bad.join("\n")
        );
    }
    if present.iter().all(|&p| p) {
        println!("{shown}: all {} files present and verified, nothing to do", files.len());
        return Ok(vec![Action::Present; files.len()]);
    }

    if let Source::Dir { path, shown: from } = source
        && !path.is_dir()
    {
        bail!("--from {}: no such folder", from.display());
    }
    fs::create_dir_all(dest).with_context(|| format!("cannot create {shown}"))?;
    let mut actions = Vec::with_capacity(files.len());
    for (&(name, expected), &is_present) in files.iter().zip(&present) {
        if is_present {
            println!("{}: present and verified", shown_file(name));
            actions.push(Action::Present);
            continue;
        }
        let target = dest.join(name);
        let action = match source {
            Source::Dir { path, shown: from } => {
                let src = path.join(name);
                let src_shown = from.join(name).display().to_string();
                let mut input = fs::File::open(&src).with_context(|| format!("cannot open {src_shown}"))?;
                let part = Part::create(&target)?;
                let actual = part.fill(|w| {
                    io::copy(&mut input, w).with_context(|| format!("cannot copy {src_shown}"))?;
                    Ok(())
                })?;
                if actual != expected {
                    bail!(
                        "source file {src_shown}: MD5 mismatch\n  expected {expected}\n  \
                         actual   {actual}\nnothing was written to {}",
                        shown_file(name)
                    );
                }
                part.commit()?;
                println!("{}: copied from {src_shown}, MD5 verified", shown_file(name));
                Action::Copied
            }
            Source::Mirrors { urls, agent } => {
                let url = download(agent, urls, name, expected, &target)?;
                println!("{}: downloaded from {url}, MD5 verified", shown_file(name));
                Action::Downloaded(url)
            }
        };
        actions.push(action);
    }
    let fetched = actions.iter().filter(|a| **a != Action::Present).count();
    let verb = match source {
        Source::Dir { .. } => "copied",
        Source::Mirrors { .. } => "downloaded",
    };
    println!(
        "{shown}: {} files ready ({fetched} {verb}, {} already present)",
        files.len(),
        files.len() - fetched
    );
    Ok(actions)
}

/// MD5 of a file, in lowercase hex.
fn md5_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// A `<name>.part` file being written; removed on drop unless committed.
#[derive(Debug)]
struct Part {
    part: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Part {
    /// Starts `<target>.<pid>.part` (a leftover one is truncated). The process
    /// id keeps two fetches running at once into the same folder from writing
    /// the same temporary file; the renames that finish them are atomic.
    fn create(target: &Path) -> Result<Self> {
        let mut name = target.file_name().expect("target has a file name").to_owned();
        name.push(format!(".{}.part", std::process::id()));
        Ok(Self {
            part: target.with_file_name(name),
            target: target.to_path_buf(),
            done: false,
        })
    }

    /// Writes what `write` produces to the `.part` file, fsyncs it and
    /// returns the MD5 of the bytes written.
    fn fill(&self, write: impl FnOnce(&mut HashingWriter) -> Result<()>) -> Result<String> {
        let file = fs::File::create(&self.part).with_context(|| format!("cannot create {}", self.part.display()))?;
        let mut w = HashingWriter {
            file: io::BufWriter::with_capacity(1 << 16, file),
            hasher: Md5::new(),
        };
        write(&mut w)?;
        let file = w
            .file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .with_context(|| format!("cannot write {}", self.part.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.part.display()))?;
        Ok(format!("{:x}", w.hasher.finalize()))
    }

    /// Renames the verified `.part` to its final name.
    fn commit(mut self) -> Result<()> {
        fs::rename(&self.part, &self.target).with_context(|| format!("cannot rename {}", self.part.display()))?;
        self.done = true;
        // Make the rename itself durable; not possible (or needed) everywhere.
        if let Some(dir) = self.target.parent()
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.part);
        }
    }
}

/// A file writer that hashes everything written through it.
#[derive(Debug)]
struct HashingWriter {
    file: io::BufWriter<fs::File>,
    hasher: Md5,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An HTTP client with timeouts, honouring the usual proxy variables
/// (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, ...).
fn http_agent() -> ureq::Agent {
    http_agent_with(ureq::Proxy::try_from_env())
}

/// An HTTP client with timeouts and the given proxy.
fn http_agent_with(proxy: Option<ureq::Proxy>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(proxy)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(30 * 60)))
        .user_agent(concat!("deepgen-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Why one download attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another try at the same mirror (network trouble, 5xx).
    Transient(anyhow::Error),
    /// Move on to the next mirror (404, wrong bytes).
    Permanent(anyhow::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transient(e) | Failure::Permanent(e) => write!(f, "{e:#}"),
        }
    }
}

/// Downloads `name` to `target` from the first mirror that serves it with
/// the right MD5; returns the URL used.
fn download(agent: &ureq::Agent, mirrors: &[&str], name: &str, expected: &str, target: &Path) -> Result<String> {
    // The last failure at each mirror, for the final message.
    let mut failures = Vec::new();
    for mirror in mirrors {
        let url = format!("{mirror}{name}");
        for attempt in 1..=TRIES_PER_MIRROR {
            eprintln!("  downloading {url} (try {attempt} of {TRIES_PER_MIRROR})");
            match download_once(agent, &url, expected, target) {
                Ok(()) => return Ok(url),
                Err(failure) => {
                    eprintln!("  {url}: {failure}");
                    let last = matches!(failure, Failure::Permanent(_)) || attempt == TRIES_PER_MIRROR;
                    if last {
                        failures.push(format!("{url}: {failure}"));
                        break;
                    }
                    thread::sleep(Duration::from_secs(2u64.pow(attempt)));
                }
            }
        }
    }
    bail!(
        "could not download {name} from any mirror:\n  {}\n\
         on a machine without network, copy the four files from a folder with `--from DIR`",
        failures.join("\n  ")
    )
}

/// One attempt: GET `url` into `<target>.part`, verify, rename.
fn download_once(agent: &ureq::Agent, url: &str, expected: &str, target: &Path) -> Result<(), Failure> {
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) if (400..500).contains(&code) && code != 429 => {
            Failure::Permanent(anyhow::anyhow!("HTTP status {code}"))
        }
        e => Failure::Transient(e.into()),
    })?;
    let body = response.into_body();
    let total = body.content_length();
    let mut reader = body.into_reader();
    let part = Part::create(target).map_err(Failure::Permanent)?;
    let name = target.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut progress = Progress::new(&name, total);
    let filled = part.fill(|w| {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            w.write_all(&buf[..n])?;
            progress.advance(n as u64);
        }
        Ok(())
    });
    progress.finish();
    let actual = filled.map_err(Failure::Transient)?;
    if actual != expected {
        return Err(Failure::Permanent(anyhow::anyhow!(
            "MD5 mismatch (expected {expected}, actual {actual}); discarded"
        )));
    }
    part.commit().map_err(Failure::Permanent)
}

/// Download progress on stderr: a self-updating line on a terminal, a line
/// per quarter otherwise (CI logs).
#[derive(Debug)]
struct Progress {
    name: String,
    total: Option<u64>,
    done: u64,
    tty: bool,
    last_draw: Instant,
    quarters: u64,
}

impl Progress {
    fn new(name: &str, total: Option<u64>) -> Self {
        Self {
            name: name.to_string(),
            total,
            done: 0,
            tty: io::stderr().is_terminal(),
            last_draw: Instant::now(),
            quarters: 0,
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.tty {
            if self.last_draw.elapsed() >= Duration::from_millis(100) {
                self.last_draw = Instant::now();
                eprint!("\r  {}: {}   ", self.name, self.describe());
            }
        } else if let Some(total) = self.total.filter(|&t| t > 0) {
            let quarters = self.done * 4 / total;
            if quarters > self.quarters && quarters < 4 {
                self.quarters = quarters;
                eprintln!("  {}: {}", self.name, self.describe());
            }
        }
    }

    fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        match self.total.filter(|&t| t > 0) {
            Some(t) => format!("{:3}% of {:.1} MB", self.done * 100 / t, mb(t)),
            None => format!("{:.1} MB", mb(self.done)),
        }
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r");
        }
        eprintln!("  {}: {}", self.name, self.describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four small fake files and their MD5s, written to a fresh folder.
    fn fake_source() -> (tempfile::TempDir, Vec<(&'static str, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut table = Vec::new();
        for (i, (name, _)) in MNIST.files.iter().enumerate() {
            let bytes: Vec<u8> = (0..1000 + 37 * i).map(|k| (k * 7 + i) as u8).collect();
            fs::write(dir.path().join(name), &bytes).unwrap();
            table.push((*name, format!("{:x}", Md5::digest(&bytes))));
        }
        (dir, table)
    }

    fn as_table<'a>(t: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        t.iter().map(|(n, m)| (*n, m.as_str())).collect()
    }

    fn copy_from(src: &Path, dest: &Path, table: &[(&str, &str)]) -> Result<Vec<Action>> {
        let source = Source::Dir { path: src, shown: src };
        fetch(dest, &dest.display().to_string(), table, &source)
    }

    fn part_files(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "part"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn md5_of_known_bytes() {
        // RFC 1321 test suite: MD5("abc").
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(md5_file(&path).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn copies_then_second_run_is_a_no_op() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        let dest = dest.path().join("nested/mnist");

        let first = copy_from(src.path(), &dest, &table).unwrap();
        assert_eq!(first, vec![Action::Copied; 4]);
        for (name, _) in &table {
            assert_eq!(
                fs::read(dest.join(name)).unwrap(),
                fs::read(src.path().join(name)).unwrap()
            );
        }
        let modified = fs::metadata(dest.join(table[0].0)).unwrap().modified().unwrap();

        let second = copy_from(src.path(), &dest, &table).unwrap();
        assert_eq!(second, vec![Action::Present; 4]);
        let again = fs::metadata(dest.join(table[0].0)).unwrap().modified().unwrap();
        assert_eq!(modified, again, "a verified file is not rewritten");
        assert!(part_files(&dest).is_empty());
    }

    #[test]
    fn only_missing_files_are_copied() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        copy_from(src.path(), dest.path(), &table).unwrap();
        fs::remove_file(dest.path().join(table[2].0)).unwrap();
        let actions = copy_from(src.path(), dest.path(), &table).unwrap();
        assert_eq!(
            actions,
            vec![Action::Present, Action::Present, Action::Copied, Action::Present]
        );
    }

    #[test]
    fn corrupted_destination_is_an_error_naming_file_and_checksums() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        copy_from(src.path(), dest.path(), &table).unwrap();

        let victim = dest.path().join(table[1].0);
        let mut bytes = fs::read(&victim).unwrap();
        bytes[10] ^= 1;
        fs::write(&victim, &bytes).unwrap();
        let actual = format!("{:x}", Md5::digest(&bytes));

        let err = format!("{:#}", copy_from(src.path(), dest.path(), &table).unwrap_err());
        assert!(err.contains("train-labels-idx1-ubyte.gz"), "{err}");
        assert!(err.contains(table[1].1), "expected MD5 missing: {err}");
        assert!(err.contains(&actual), "actual MD5 missing: {err}");
        assert!(err.contains("delete it"), "{err}");
        // The user's file is left alone.
        assert_eq!(fs::read(&victim).unwrap(), bytes);
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn corrupted_source_is_an_error_and_leaves_nothing_behind() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let victim = src.path().join(table[0].0);
        let mut bytes = fs::read(&victim).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&victim, &bytes).unwrap();
        let actual = format!("{:x}", Md5::digest(&bytes));

        let dest = tempfile::tempdir().unwrap();
        let err = format!("{:#}", copy_from(src.path(), dest.path(), &table).unwrap_err());
        assert!(err.contains("source file"), "{err}");
        assert!(err.contains(&victim.display().to_string()), "{err}");
        assert!(err.contains(table[0].1) && err.contains(&actual), "{err}");
        assert!(!dest.path().join(table[0].0).exists());
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn missing_source_file_is_an_error() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        fs::remove_file(src.path().join(table[3].0)).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = format!("{:#}", copy_from(src.path(), dest.path(), &table).unwrap_err());
        assert!(err.contains(table[3].0), "{err}");
        assert!(!dest.path().join(table[3].0).exists());
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn stale_part_file_is_replaced() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        fs::write(
            dest.path().join(format!("{}.{}.part", table[0].0, std::process::id())),
            b"junk",
        )
        .unwrap();
        copy_from(src.path(), dest.path(), &table).unwrap();
        assert_eq!(md5_file(&dest.path().join(table[0].0)).unwrap(), table[0].1);
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn failed_fill_removes_the_part_file() {
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("x.gz");
        {
            let part = Part::create(&target).unwrap();
            let err = part.fill(|w| {
                w.write_all(b"half")?;
                bail!("connection reset")
            });
            assert!(err.is_err());
        }
        assert!(!target.exists());
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn unreachable_mirror_fails_cleanly() {
        // Port 9 on localhost: nothing listens, so the connection is refused
        // at once; no network is needed. One try only to keep the test fast.
        let agent = local_agent();
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("t10k-labels-idx1-ubyte.gz");
        let failure = download_once(&agent, "http://127.0.0.1:9/x.gz", "0", &target);
        assert!(matches!(failure, Err(Failure::Transient(_))));
        assert!(!target.exists());
        assert!(part_files(dest.path()).is_empty());
    }

    /// A client for the local test servers, deaf to proxy variables.
    fn local_agent() -> ureq::Agent {
        http_agent_with(None)
    }

    /// Serves `routes` (path, status, body) over HTTP/1.1 on localhost for
    /// `connections` connections, answering 404 to other paths; returns the
    /// base URL.
    fn serve(routes: Vec<(String, u16, Vec<u8>)>, connections: usize) -> String {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let mut stream = stream.unwrap();
                let mut reader = io::BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut header = String::new();
                while reader.read_line(&mut header).unwrap() > 2 {
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = routes
                    .iter()
                    .find(|r| r.0 == path)
                    .map_or((404, &b"not found"[..]), |r| (r.1, &r.2[..]));
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                stream.write_all(body).unwrap();
            }
        });
        base
    }

    #[test]
    fn download_falls_back_past_404_and_bad_bytes() {
        let name = "t10k-labels-idx1-ubyte.gz";
        let good = b"the right bytes".to_vec();
        let expected = format!("{:x}", Md5::digest(&good));
        let missing = serve(vec![], 1);
        let wrong = serve(vec![(format!("/{name}"), 200, b"wrong bytes".to_vec())], 1);
        let right = serve(vec![(format!("/{name}"), 200, good.clone())], 1);

        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join(name);
        let mirrors = [missing.as_str(), wrong.as_str(), right.as_str()];
        let url = download(&local_agent(), &mirrors, name, &expected, &target).unwrap();
        assert_eq!(url, format!("{right}{name}"));
        assert_eq!(fs::read(&target).unwrap(), good);
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn download_error_names_every_mirror_and_leaves_nothing() {
        let name = "t10k-labels-idx1-ubyte.gz";
        let a = serve(vec![], 1);
        let b = serve(vec![(format!("/{name}"), 200, b"wrong".to_vec())], 1);
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join(name);
        let err = download(&local_agent(), &[&a, &b], name, "0", &target).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains(&format!("{a}{name}: HTTP status 404")), "{err}");
        assert!(err.contains(&format!("{b}{name}: MD5 mismatch")), "{err}");
        assert!(err.contains("--from"), "{err}");
        assert!(!target.exists());
        assert!(part_files(dest.path()).is_empty());
    }

    #[test]
    fn fetch_downloads_the_missing_files() {
        let (src, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        // One file is already there; the other three come over HTTP.
        fs::copy(src.path().join(table[0].0), dest.path().join(table[0].0)).unwrap();
        let routes = table
            .iter()
            .map(|(name, _)| (format!("/{name}"), 200, fs::read(src.path().join(name)).unwrap()))
            .collect();
        let base = serve(routes, 3);
        let mirrors = [base.as_str()];
        let agent = local_agent();
        let source = Source::Mirrors {
            urls: &mirrors,
            agent: &agent,
        };
        let actions = fetch(dest.path(), "dest", &table, &source).unwrap();
        assert_eq!(actions[0], Action::Present);
        for (action, (name, md5)) in actions.iter().zip(&table).skip(1) {
            assert_eq!(*action, Action::Downloaded(format!("{base}{name}")));
            assert_eq!(md5_file(&dest.path().join(name)).unwrap(), *md5);
        }
    }

    #[test]
    fn missing_from_folder_is_a_clear_error() {
        let (_, table) = fake_source();
        let table = as_table(&table);
        let dest = tempfile::tempdir().unwrap();
        let nowhere = dest.path().join("nowhere");
        let err = copy_from(&nowhere, dest.path(), &table).unwrap_err().to_string();
        assert!(err.contains("no such folder") && err.contains("nowhere"), "{err}");
    }

    #[test]
    fn tables_are_well_formed() {
        for ds in [&MNIST, &FASHION_MNIST] {
            for (name, md5) in ds.files {
                assert!(name.ends_with("-ubyte.gz"));
                assert_eq!(md5.len(), 32);
                assert!(md5.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            assert!(ds.mirrors.iter().all(|m| m.ends_with('/')));
        }
    }
}
