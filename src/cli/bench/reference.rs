//! The PyTorch reference as a long-lived subprocess that times on request.
//!
//! `bench/torch_reference.py` loads the weights and the edit once, announces itself with
//! a `ready` line, then answers one JSON line per request on stdin:
//!
//! ```text
//! → (started)                        ← {"type":"ready","torch":"2.13.0",...}
//! → {"case":"fp32","reps":4}         ← {"type":"timing","case":"fp32","ms":[...]}
//! → {"case":"nope","reps":4}         ← {"type":"error","message":"..."}
//! → (stdin closed)                   the script exits
//! ```
//!
//! Keeping it alive is what lets the bench alternate our cases with PyTorch's in rounds
//! (see [`super::rounds`]) without paying Python's start-up each time. Answers are read on
//! a thread and waited for with a timeout, so a reference that dies or hangs ends the
//! bench with an error that names the script and shows its stderr, never a hang.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use tch::{Device, Kind, Tensor};

use super::rounds::Timed;
use crate::edit::EditPlanes;
use crate::model::ProgGan;

/// How long the reference may take to load torch, the weights and the edit.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one answer may take, besides [`PER_REP_TIMEOUT`] per repetition.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
pub const PER_REP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the reference's stderr quoted in an error.
const STDERR_TAIL: usize = 4000;

/// One request: time `case` `reps` times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request<'a> {
    pub case: &'a str,
    pub reps: usize,
}

/// What the reference says once it has loaded everything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub torch: String,
    pub threads: i64,
    pub device: String,
    pub batch: i64,
    /// `bf16` (CPU) or `fp16` (CUDA), when the reference also runs in low precision.
    #[serde(default)]
    pub low_precision: Option<String>,
    /// PSNR of the low-precision pixels against its own fp32 ones.
    #[serde(default)]
    pub low_psnr_db_vs_fp32: Option<f64>,
}

/// One line the reference prints.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    Ready(Ready),
    Timing { case: String, ms: Vec<f64> },
    Error { message: String },
}

/// A line that breaks the protocol.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("not a protocol line: `{line}` ({reason})")]
    Malformed { line: String, reason: String },
    #[error("expected {expected}, got `{line}`")]
    Unexpected { expected: String, line: String },
    #[error("the reference refused `{request}`: {message}")]
    Refused { request: String, message: String },
}

/// Parses one line of the reference's stdout.
pub fn parse_answer(line: &str) -> Result<Answer, ProtocolError> {
    serde_json::from_str(line.trim()).map_err(|e| ProtocolError::Malformed {
        line: line.trim().to_string(),
        reason: e.to_string(),
    })
}

/// The line that asks for `request`.
pub fn request_line(request: &Request) -> String {
    serde_json::to_string(request).expect("a request always serialises") + "\n"
}

/// The milliseconds of an answer to `request`: a timing of that case with one positive,
/// finite time per repetition.
pub fn timing_of(request: &Request, line: &str) -> Result<Vec<f64>, ProtocolError> {
    let unexpected = || ProtocolError::Unexpected {
        expected: format!("{} timings of `{}`", request.reps, request.case),
        line: line.trim().to_string(),
    };
    match parse_answer(line)? {
        Answer::Timing { case, ms } => {
            let valid = ms.iter().all(|t| t.is_finite() && *t > 0.0);
            if case != request.case || ms.len() != request.reps || !valid {
                return Err(unexpected());
            }
            Ok(ms)
        }
        Answer::Error { message } => Err(ProtocolError::Refused {
            request: request_line(request).trim().to_string(),
            message,
        }),
        Answer::Ready(_) => Err(unexpected()),
    }
}

/// A running reference.
pub struct Reference {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    /// The script, as errors name it.
    script: String,
    /// Where the reference's stderr goes, for errors.
    stderr_log: PathBuf,
    answer_timeout: Duration,
    per_rep_timeout: Duration,
    pub ready: Ready,
}

impl Reference {
    /// Starts `command` (the reference script `script` and its arguments), sends its
    /// stderr to `stderr_log`, and waits up to `start_timeout` for its `ready` line.
    pub fn start(
        mut command: Command,
        script: &str,
        stderr_log: &Path,
        start_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the PyTorch reference {script}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let failed = line.is_err();
                if sender.send(line).is_err() || failed {
                    break;
                }
            }
        });
        let mut reference = Reference {
            stdin: child.stdin.take(),
            child,
            lines,
            script: script.to_string(),
            stderr_log: stderr_log.to_path_buf(),
            answer_timeout: ANSWER_TIMEOUT,
            per_rep_timeout: PER_REP_TIMEOUT,
            ready: Ready {
                torch: String::new(),
                threads: 0,
                device: String::new(),
                batch: 0,
                low_precision: None,
                low_psnr_db_vs_fp32: None,
            },
        };
        let line = reference.next_line("its ready line", start_timeout)?;
        match parse_answer(&line) {
            Ok(Answer::Ready(ready)) => reference.ready = ready,
            Ok(_) => bail!(reference.failure(&format!("answered `{line}` before its ready line"))),
            Err(e) => bail!(reference.failure(&e.to_string())),
        }
        Ok(reference)
    }

    /// Sets how long one answer may take: `answer` plus `per_rep` per repetition.
    #[cfg(test)]
    pub fn with_timeouts(mut self, answer: Duration, per_rep: Duration) -> Self {
        self.answer_timeout = answer;
        self.per_rep_timeout = per_rep;
        self
    }

    /// Asks the reference to time `case` `reps` times.
    pub fn time(&mut self, case: &str, reps: usize) -> anyhow::Result<Vec<f64>> {
        let request = Request { case, reps };
        let line = request_line(&request);
        let sent = self
            .stdin
            .as_mut()
            .map(|stdin| stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()));
        if !matches!(sent, Some(Ok(()))) {
            bail!(self.failure(&format!(
                "stopped reading requests (sending {})",
                line.trim()
            )));
        }
        let timeout = self.answer_timeout + self.per_rep_timeout * reps as u32;
        let answer = self.next_line(&format!("an answer to {}", line.trim()), timeout)?;
        timing_of(&request, &answer).map_err(|e| anyhow::anyhow!(self.failure(&e.to_string())))
    }

    /// The next stdout line, or an error when the reference exits or stays silent past
    /// `timeout` (it is then killed).
    fn next_line(&mut self, waiting_for: &str, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => bail!(self.failure(&format!(
                "stdout failed ({e}) while we waited for {waiting_for}"
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: the process is gone or going; give it a moment to be
                // reaped so the error can show its status.
                let status = (0..50)
                    .find_map(|_| match self.child.try_wait() {
                        Ok(None) => {
                            std::thread::sleep(Duration::from_millis(20));
                            None
                        }
                        Ok(Some(status)) => Some(status.to_string()),
                        Err(e) => Some(e.to_string()),
                    })
                    .unwrap_or_else(|| "still running, stdout closed".to_string());
                bail!(self.failure(&format!(
                    "exited ({status}) while we waited for {waiting_for}"
                )))
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(self.failure(&format!(
                    "gave no answer in {:.0} s while we waited for {waiting_for}; killed it",
                    timeout.as_secs_f64()
                )))
            }
        }
    }

    /// An error message naming the script, with the tail of its stderr.
    fn failure(&self, what: &str) -> String {
        let stderr = std::fs::read(&self.stderr_log).unwrap_or_default();
        let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL)..];
        let tail = String::from_utf8_lossy(tail);
        let tail = tail.trim();
        if tail.is_empty() {
            format!("PyTorch reference {} {what}", self.script)
        } else {
            format!(
                "PyTorch reference {} {what}; its stderr ends:\n{tail}",
                self.script
            )
        }
    }
}

impl Drop for Reference {
    /// Closes stdin (the script's signal to exit), waits a little, then kills.
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One of the reference's cases, on a reference shared by several cases.
pub struct ReferenceCase<'a> {
    pub reference: &'a std::cell::RefCell<Reference>,
    pub case: &'static str,
}

impl Timed for ReferenceCase<'_> {
    fn time(&mut self, reps: usize) -> anyhow::Result<Vec<f64>> {
        self.reference.borrow_mut().time(self.case, reps)
    }
}

/// What a reference is started with: the model's weights and the edit, written once per
/// model under the bench's scratch folder, and how to run the script.
pub struct ReferenceInputs {
    python: PathBuf,
    script: PathBuf,
    weights: PathBuf,
    edit: PathBuf,
    pixels: PathBuf,
    scratch: PathBuf,
    name: String,
    layer: String,
    device: &'static str,
}

/// glibc set up as `keep_freed_memory` sets up ours.
const TUNED_MALLOC: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

impl ReferenceInputs {
    /// Writes `model`'s weights (reference names, f32 on the host) and the edit (the
    /// activation `features` `[N, C, H, W]` and the planes) for the reference to load.
    pub fn write(
        model: &ProgGan,
        name: &str,
        layer: &str,
        features: &Tensor,
        planes: &EditPlanes,
        scratch: &Path,
        python: &Path,
    ) -> anyhow::Result<Self> {
        let cpu = |t: &Tensor| -> anyhow::Result<Tensor> {
            Ok(t.f_to_device(Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?)
        };
        let weights = scratch.join(format!("{name}-weights.safetensors"));
        let named = model
            .named_tensors()
            .iter()
            .map(|(k, t)| Ok((k.clone(), cpu(t)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Tensor::write_safetensors(&named, &weights)?;
        let edit = scratch.join(format!("{name}-edit.safetensors"));
        Tensor::write_safetensors(
            &[
                ("features", cpu(features)?),
                ("alpha", cpu(&planes.alpha)?),
                ("value", cpu(&planes.value)?),
            ],
            &edit,
        )?;
        Ok(ReferenceInputs {
            python: python.to_path_buf(),
            script: crate::model::repo_path("bench/torch_reference.py"),
            weights,
            edit,
            pixels: scratch.join(format!("{name}-torch.u8")),
            scratch: scratch.to_path_buf(),
            name: name.to_string(),
            layer: layer.to_string(),
            device: if model.device().is_cuda() {
                "cuda"
            } else {
                "cpu"
            },
        })
    }

    /// Where the plain reference writes its fp32 pixels `[N, R, R, 3]` u8.
    pub fn pixels_path(&self) -> &Path {
        &self.pixels
    }

    /// Starts the reference: plain (fp32 and low precision, writing its fp32 pixels), or
    /// with our glibc settings (fp32 only).
    pub fn start(&self, tuned_malloc: bool) -> anyhow::Result<Reference> {
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .arg("--weights")
            .arg(&self.weights)
            .arg("--edit")
            .arg(&self.edit)
            .args(["--layer", &self.layer, "--device", self.device])
            .args(["--threads", &tch::get_num_threads().to_string()]);
        if tuned_malloc {
            command
                .env("GLIBC_TUNABLES", TUNED_MALLOC)
                .arg("--fp32-only");
        } else {
            command.arg("--pixels-out").arg(&self.pixels);
        }
        let variant = if tuned_malloc { "-tuned" } else { "" };
        let log = self
            .scratch
            .join(format!("{}-torch{variant}.stderr", self.name));
        Reference::start(
            command,
            &self.script.display().to_string(),
            &log,
            START_TIMEOUT,
        )
    }
}

/// The largest difference between our u8 pixels and the reference's.
pub fn max_pixel_diff(ours: &[u8], theirs: &[u8]) -> anyhow::Result<u8> {
    if theirs.len() != ours.len() {
        bail!(
            "the PyTorch reference wrote {} pixel bytes, ours has {}",
            theirs.len(),
            ours.len()
        );
    }
    Ok(ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_diff_is_the_largest_byte_difference() {
        assert_eq!(max_pixel_diff(&[0, 10, 255], &[1, 7, 255]).unwrap(), 3);
        assert!(max_pixel_diff(&[0, 1], &[0]).is_err());
    }

    #[test]
    fn requests_are_one_json_line() {
        let line = request_line(&Request {
            case: "fp32",
            reps: 4,
        });
        assert_eq!(line, "{\"case\":\"fp32\",\"reps\":4}\n");
    }

    #[test]
    fn ready_line_parses_with_and_without_low_precision() {
        let line = r#"{"type":"ready","torch":"2.13.0","threads":2,"device":"cpu","batch":1,
            "low_precision":"bf16","low_psnr_db_vs_fp32":41.5}"#
            .replace('\n', "");
        let Answer::Ready(ready) = parse_answer(&line).unwrap() else {
            panic!("not ready");
        };
        assert_eq!(ready.low_precision.as_deref(), Some("bf16"));
        assert_eq!(ready.low_psnr_db_vs_fp32, Some(41.5));
        let bare = r#"{"type":"ready","torch":"2","threads":1,"device":"cuda","batch":1}"#;
        let Answer::Ready(ready) = parse_answer(bare).unwrap() else {
            panic!("not ready");
        };
        assert_eq!(ready.low_precision, None);
    }

    #[test]
    fn timing_answer_gives_one_time_per_rep() {
        let request = Request {
            case: "low",
            reps: 2,
        };
        let ms = timing_of(&request, r#"{"type":"timing","case":"low","ms":[1.5,2.0]}"#);
        assert_eq!(ms, Ok(vec![1.5, 2.0]));
    }

    #[test]
    fn timing_of_another_case_or_count_is_rejected() {
        let request = Request {
            case: "fp32",
            reps: 2,
        };
        for line in [
            r#"{"type":"timing","case":"low","ms":[1.0,2.0]}"#,
            r#"{"type":"timing","case":"fp32","ms":[1.0]}"#,
            r#"{"type":"timing","case":"fp32","ms":[1.0,-2.0]}"#,
            r#"{"type":"ready","torch":"2","threads":1,"device":"cpu","batch":1}"#,
        ] {
            assert!(
                matches!(
                    timing_of(&request, line),
                    Err(ProtocolError::Unexpected { .. })
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn error_answer_is_a_refusal_with_its_message() {
        let request = Request {
            case: "nope",
            reps: 1,
        };
        let error = timing_of(&request, r#"{"type":"error","message":"unknown case"}"#);
        let Err(ProtocolError::Refused { message, request }) = error else {
            panic!("{error:?}");
        };
        assert_eq!(message, "unknown case");
        assert!(request.contains("nope"));
    }

    #[test]
    fn non_json_or_unknown_lines_are_malformed() {
        assert!(matches!(
            parse_answer("Loading weights..."),
            Err(ProtocolError::Malformed { .. })
        ));
        assert!(matches!(
            parse_answer(r#"{"type":"hello"}"#),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    /// A stand-in reference in shell: prints `script`'s lines.
    fn fake(script: &str, name: &str) -> (Command, PathBuf) {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let log = std::env::temp_dir().join(format!(
            "ganpaint-bench-reference-{name}-{}.log",
            std::process::id()
        ));
        (command, log)
    }

    const READY: &str =
        r#"echo '{"type":"ready","torch":"t","threads":1,"device":"cpu","batch":1}'"#;

    #[test]
    fn a_live_reference_answers_requests_in_turn() {
        let script = format!(
            r#"{READY}; while read line; do echo '{{"type":"timing","case":"fp32","ms":[3.0]}}'; done"#
        );
        let (command, log) = fake(&script, "live");
        let mut reference = Reference::start(command, "fake.py", &log, START_TIMEOUT).unwrap();
        assert_eq!(reference.ready.torch, "t");
        assert_eq!(reference.time("fp32", 1).unwrap(), vec![3.0]);
        assert_eq!(reference.time("fp32", 1).unwrap(), vec![3.0]);
        drop(reference);
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn a_reference_that_dies_is_an_error_naming_the_script_with_its_stderr() {
        let script = format!("{READY}; read line; echo 'out of memory' >&2; exit 3");
        let (command, log) = fake(&script, "dies");
        let mut reference = Reference::start(command, "fake.py", &log, START_TIMEOUT).unwrap();
        let error = reference.time("fp32", 1).unwrap_err().to_string();
        assert!(error.contains("fake.py"), "{error}");
        assert!(error.contains("exited"), "{error}");
        assert!(error.contains("out of memory"), "{error}");
        drop(reference);
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn a_reference_that_dies_before_ready_is_an_error() {
        let (command, log) = fake("echo 'no module named torch' >&2; exit 1", "early");
        let error = Reference::start(command, "fake.py", &log, START_TIMEOUT)
            .err()
            .expect("the start fails")
            .to_string();
        assert!(error.contains("fake.py"), "{error}");
        assert!(error.contains("no module named torch"), "{error}");
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn a_silent_reference_is_killed_after_the_timeout() {
        let script = format!("{READY}; read line; exec sleep 600");
        let (command, log) = fake(&script, "silent");
        let mut reference = Reference::start(command, "fake.py", &log, START_TIMEOUT)
            .unwrap()
            .with_timeouts(Duration::from_millis(200), Duration::ZERO);
        let error = reference.time("fp32", 1).unwrap_err().to_string();
        assert!(error.contains("gave no answer"), "{error}");
        assert!(matches!(reference.child.try_wait(), Ok(Some(_))), "killed");
        drop(reference);
        let _ = std::fs::remove_file(log);
    }
}
