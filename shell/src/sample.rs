//! Job-like data for the demo and the benchmarks: jobs shaped like a
//! scheduler's, with the same fields filled and similar sizes.

use jobvault_core::{Job, JobId, JobStatus, TaskStatus, TaskSummary, Timestamp};

/// An id in the scheduler's style: creation time and a hex counter.
pub fn scheduler_id(created: Timestamp, n: usize) -> JobId {
    let t = created.to_offset_date_time();
    JobId::new(format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z_{n:016x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    ))
    .expect("scheduler ids are valid")
}

/// A job of a few hundred bytes as a writer would store it: its id and its
/// JSON body.
pub fn body(id: JobId, created: Timestamp, rng: &mut fastrand::Rng) -> (JobId, String) {
    let job = job(id.clone(), created, rng);
    (
        id,
        serde_json::to_string(&job).expect("a sample job serializes"),
    )
}

/// A job of a few hundred bytes, its varying fields drawn from `rng`.
fn job(id: JobId, created: Timestamp, rng: &mut fastrand::Rng) -> Job {
    let mut job = Job::new(
        id,
        format!(
            "Test-Debian10-Clang-GCE-CPU-AVX2-x86_64-{}",
            ["Debug", "Release"][rng.usize(..2)]
        ),
    );
    job.repo = "https://skia.googlesource.com/skia.git".to_owned();
    job.revision = format!("{:040x}", rng.u128(..));
    job.status = [
        JobStatus::Success,
        JobStatus::InProgress,
        JobStatus::Failure,
    ][rng.usize(..3)];
    job.created = created;
    job.priority = 0.5;
    job.dependencies
        .insert("Test".to_owned(), vec!["Build".to_owned()]);
    job.tasks.insert(
        "Build".to_owned(),
        vec![TaskSummary {
            id: format!("{:016x}", rng.u64(..)),
            attempt: 1,
            max_attempts: 2,
            status: TaskStatus::Success,
            swarming_task_id: format!("{:012x}", rng.u64(..1 << 48)),
        }],
    );
    job
}
