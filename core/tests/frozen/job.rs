// The envelope frozen in format 1; its encodings are the files beside this one.
fn frozen_v1_envelope() -> jobvault_core::Envelope {
    use jobvault_core::{Envelope, Job, JobId, JobStatus, TaskStatus, TaskSummary, Timestamp};
    let at = |text: &str| Timestamp::parse_rfc3339(text).unwrap();
    let mut job = Job::new(
        JobId::new("20161116T220425.634818978Z_0000000000001e88").unwrap(),
        "Build-Debian10-Clang-x86_64-Release",
    );
    job.repo = "https://skia.googlesource.com/skia.git".into();
    job.revision = "a2f4b8c1d9e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3".into();
    job.status = JobStatus::InProgress;
    job.created = at("2016-11-16T22:04:25.634818978Z");
    job.finished = Some(at("2016-11-16T22:14:00Z"));
    job.db_modified = at("2016-11-16T22:10:01.5Z");
    job.priority = 0.75;
    job.is_force = true;
    job.dependencies.insert("Build".into(), vec![]);
    job.dependencies.insert("Test".into(), vec!["Build".into()]);
    job.tasks.insert(
        "Build".into(),
        vec![TaskSummary {
            id: "task-1".into(),
            attempt: 1,
            max_attempts: 2,
            status: TaskStatus::Success,
            swarming_task_id: "3a1b2c".into(),
        }],
    );
    Envelope::new(7_822, at("2016-11-16T22:10:01.5Z"), job)
}
