//! Preemptible jobs' containers: `conductor-j<job id>`, labelled `conductor.job` (not
//! `conductor.managed`: the servers' listing and garbage collection never see them), with
//! the job's memory limit and no volume. A retried run finds the container it made.

use super::{DockerError, DockerNode};
use crate::driver::{JobSpec, JobStatus};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use std::collections::HashMap;

pub const LABEL_JOB: &str = "conductor.job";

pub fn job_container_name(job: i64) -> String {
    format!("conductor-j{job}")
}

fn gone(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl DockerNode {
    /// Creates the job's container unless it exists, and starts it (running is fine).
    pub async fn run_job(&self, spec: &JobSpec) -> Result<(), DockerError> {
        let name = job_container_name(spec.job);
        if self.job_status(spec.job).await?.is_none() {
            let body = ContainerCreateBody {
                image: Some(spec.image.clone()),
                cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
                labels: Some(HashMap::from([(LABEL_JOB.to_string(), spec.job.to_string())])),
                host_config: Some(HostConfig {
                    memory: Some(i64::from(spec.memory_mib) * 1024 * 1024),
                    // The lowest CPU weight: a paying server on the node comes first.
                    cpu_shares: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
            match self.docker.create_container(Some(options), body).await {
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.docker.start_container(&name, None::<StartContainerOptions>).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn job_status(&self, job: i64) -> Result<Option<JobStatus>, DockerError> {
        match self.docker.inspect_container(&job_container_name(job), None::<InspectContainerOptions>).await {
            Ok(c) => Ok(Some(JobStatus {
                running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
                exit_code: c.state.as_ref().and_then(|s| s.exit_code),
            })),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGTERM: the notice (a job that is not running any more is fine).
    pub async fn signal_job(&self, job: i64) -> Result<(), DockerError> {
        let options = KillContainerOptions { signal: "SIGTERM".into() };
        match self.docker.kill_container(&job_container_name(job), Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            // Not running (it ended in the meantime): nothing to tell.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409 | 500, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove_job(&self, job: i64) -> Result<(), DockerError> {
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(&job_container_name(job), Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
