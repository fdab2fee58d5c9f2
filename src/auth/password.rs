//! Argon2id password hashes. One check needs about 19 MiB of working memory and tens of
//! milliseconds of a core, so `Passwords` runs them on a few dedicated threads (one per core),
//! each reusing its own working memory, at a lower CPU priority than the rest of Herald, and
//! makes callers wait a bounded time for a turn before it says Herald is busy. (Run anywhere,
//! any number at once, the freed blocks stayed in the allocator's per-thread arenas: a flood of
//! sign-ins once took the server to 3 GB and left 2.8 GB behind.)

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The computation could not start within the wait allowed.
    #[error("too many password checks are under way; try again in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("the password computation failed: {0}")]
    Failed(String),
}

/// Working memory for one Argon2 computation, kept by its thread between uses.
type Scratch = Vec<Block>;

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// How much lower than the rest of Herald the Argon2 threads run (a nice value): under a flood
/// of sign-ins the pages and probes go first, and the checks take what CPU is left.
const NICENESS: i32 = 10;

/// Argon2 on a fixed set of threads, a bounded wait for a turn. Shared by every request.
pub struct Passwords {
    /// One per thread: holding one means a thread is (or is about to be) free for the job.
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    max_wait: Duration,
}

impl Passwords {
    /// `threads` computations at once at most; a caller waits `max_wait` at most for its turn.
    /// The threads end when this is dropped.
    pub fn new(threads: usize, max_wait: Duration) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("herald-argon2-{i}"))
                .spawn(move || work_through(&queue))?;
        }
        Ok(Passwords {
            permits: Arc::new(Semaphore::new(threads)),
            jobs,
            max_wait,
        })
    }

    /// One thread per core; a caller waits up to 3 s for a turn.
    pub fn per_core() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, Duration::from_secs(3))
    }

    /// Does `password` match the stored PHC string? A malformed stored hash is a mismatch.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, PasswordError> {
        self.run(move |memory| verify_with(memory, &password, &stored))
            .await
    }

    /// A new Argon2id PHC string for `password`, with a random salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |memory| hash_with(memory, &password))
            .await?
            .map_err(PasswordError::Failed)
    }

    /// Waits (bounded) for a turn, then has a thread run `work`. The turn is given back by the
    /// thread when the work is done, so a request abandoned mid-way (the client hung up) cannot
    /// let more computations run than there are threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit: OwnedSemaphorePermit =
            match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(PasswordError::Busy {
                        retry_after_secs: self.max_wait.as_secs().max(1),
                    });
                }
            };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let result = work(memory);
            drop(permit);
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| PasswordError::Failed("the Argon2 threads have stopped".into()))?;
        answered.await.map_err(|_| {
            PasswordError::Failed("the Argon2 computation ended without an answer".into())
        })
    }
}

/// A worker thread: takes jobs until `Passwords` is dropped.
fn work_through(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    let mut memory = Scratch::new();
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        // A panic would be a bug in Argon2; the thread stays for the next job (the caller sees
        // a failure, and the job's turn is released as it unwinds).
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            memory = Scratch::new();
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread, no pointers involved. On Linux a
    // thread id given to setpriority(PRIO_PROCESS) changes that thread alone.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS) != 0
    };
    if failed {
        tracing::debug!("could not lower the priority of an Argon2 thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Grows `memory` to hold `blocks` (once: the buffer is reused afterwards).
fn ensure(memory: &mut Scratch, blocks: usize) {
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
}

fn verify_with(memory: &mut Scratch, password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    ensure(memory, params.block_count());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|computed| &computed == expected)
}

fn hash_with(memory: &mut Scratch, password: &str) -> Result<String, String> {
    let params = Params::default();
    let salt_bytes: [u8; Salt::RECOMMENDED_LENGTH] = rand::random();
    let salt = Salt::new(&salt_bytes).map_err(|e| e.to_string())?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    ensure(memory, params.block_count());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut memory[..])
        .map_err(|e| e.to_string())?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

/// Hashes a password at once, on this thread: for the command line, which runs alone.
pub fn hash(password: &str) -> anyhow::Result<String> {
    hash_with(&mut Vec::new(), password)
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

/// A hash of a random password, verified when the e-mail is unknown so that the answer takes
/// as long as for a real account and does not reveal which e-mails have one.
pub fn dummy_hash() -> anyhow::Result<String> {
    let random: [u8; 16] = rand::random();
    hash(&crate::auth::token::encode(&random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    fn verify(password: &str, stored: &str) -> bool {
        verify_with(&mut Vec::new(), password, stored)
    }

    #[test]
    fn hashes_verify_and_salts_differ() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(verify("correct horse battery", &a));
        assert!(!verify("wrong horse battery", &a));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn our_hashes_match_the_argon2_crates_own() {
        // Ours verify with the crate's verifier, and the crate's (other parameters too) with ours.
        let ours = hash("correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(verify("correct horse battery", &theirs));
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, Some(32)).unwrap(),
        )
        .hash_password(b"pw for small params")
        .unwrap()
        .to_string();
        // A buffer grown for bigger parameters serves smaller ones too.
        let mut memory = Vec::new();
        assert!(verify_with(&mut memory, "correct horse battery", &theirs));
        assert!(verify_with(&mut memory, "pw for small params", &small));
        assert!(!verify_with(&mut memory, "pw for small paramz", &small));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_allowed_number_run_and_the_rest_wait_a_bounded_time() {
        let passwords = Arc::new(Passwords::new(1, Duration::from_millis(50)).unwrap());
        let stored = hash("correct horse battery").unwrap();
        // One slow computation holds the only turn...
        let hold = passwords.clone();
        let slow = tokio::spawn(async move {
            hold.run(|_| std::thread::sleep(Duration::from_millis(400)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...so another gives up after its wait, saying when to come back.
        let busy = passwords
            .verify("correct horse battery".into(), stored.clone())
            .await;
        assert!(
            matches!(
                busy,
                Err(PasswordError::Busy {
                    retry_after_secs: 1
                })
            ),
            "{busy:?}"
        );
        assert!(slow.await.unwrap().is_ok());
        // Once it is done, the next goes through.
        assert!(
            passwords
                .verify("correct horse battery".into(), stored)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_check_keeps_its_turn_until_it_is_done() {
        let passwords = Arc::new(Passwords::new(1, Duration::from_millis(100)).unwrap());
        let hold = passwords.clone();
        let abandoned = tokio::spawn(async move {
            hold.run(|_| std::thread::sleep(Duration::from_millis(500)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.abort(); // the client hung up; the computation goes on
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(passwords.run(|_| ()).await.is_err(), "still one at a time");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_computation_leaves_its_thread_working() {
        let passwords = Passwords::new(1, Duration::from_millis(500)).unwrap();
        let failed = passwords.run(|_| -> u8 { panic!("a bug") }).await;
        assert!(
            matches!(failed, Err(PasswordError::Failed(_))),
            "{failed:?}"
        );
        assert_eq!(passwords.run(|_| 7).await.unwrap(), 7);
    }
}
