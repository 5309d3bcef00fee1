//! A server's logs and console through the Docker API: the last lines and a live follow of
//! what the container writes, and a command sent on its standard input or run inside it (an
//! RCON client reading the container's own password).

use super::{container_name, DockerError, DockerNode};
use crate::driver::{ByteStream, ConsoleVia};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a command run inside the container may take.
const EXEC_TIMEOUT: Duration = Duration::from_secs(15);

impl DockerNode {
    /// The last `lines` lines of the container's output (stdout and stderr).
    pub async fn logs_tail(&self, server: i64, lines: usize) -> Result<String, DockerError> {
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(&container_name(server), Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            out.push_str(&chunk?.to_string());
        }
        Ok(out)
    }

    /// The last `lines` lines, then (`follow`) what follows, as bytes of text.
    pub async fn logs_stream(&self, server: i64, lines: usize, follow: bool) -> Result<ByteStream, DockerError> {
        // Asked first: an unknown container is an error now, not an empty stream.
        if self.inspect(server).await?.is_none() {
            return Err(DockerError::NoContainer(server));
        }
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            follow,
            tail: lines.to_string(),
            ..Default::default()
        };
        let stream = self.docker.logs(&container_name(server), Some(options));
        Ok(Box::pin(stream.map(|chunk| chunk.map(|c| c.into_bytes()).map_err(std::io::Error::other))))
    }

    /// Sends `line` to the server's console; answers with the console's answer.
    pub async fn console(&self, server: i64, via: &ConsoleVia, line: &str) -> Result<String, DockerError> {
        let name = container_name(server);
        match via {
            ConsoleVia::Stdin => {
                let options = bollard::query_parameters::AttachContainerOptions {
                    stdin: true,
                    stream: true,
                    ..Default::default()
                };
                let mut attached = self.docker.attach_container(&name, Some(options)).await?;
                attached.input.write_all(format!("{line}\n").as_bytes()).await.map_err(DockerError::from_io)?;
                attached.input.flush().await.map_err(DockerError::from_io)?;
                Ok(String::new())
            }
            ConsoleVia::Exec(cli) => {
                let mut cmd = cli.clone();
                cmd.extend(line.split_whitespace().map(str::to_owned));
                let exec = self
                    .docker
                    .create_exec(
                        &name,
                        bollard::models::ExecConfig {
                            cmd: Some(cmd),
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            ..Default::default()
                        },
                    )
                    .await?;
                let run = async {
                    let mut out = String::new();
                    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                        self.docker.start_exec(&exec.id, None).await?
                    {
                        while let Some(chunk) = output.next().await {
                            out.push_str(&chunk?.to_string());
                        }
                    }
                    Ok::<_, DockerError>(out)
                };
                let out = tokio::time::timeout(EXEC_TIMEOUT, run)
                    .await
                    .map_err(|_| DockerError::Data(format!("the console did not answer within {EXEC_TIMEOUT:?}")))??;
                let code = self.docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(0);
                if code != 0 {
                    return Err(DockerError::Data(format!("the console refused (exit {code}): {}", out.trim())));
                }
                Ok(out)
            }
        }
    }
}
