//! AWS SDK clients built from one settings struct, so the SDK and the rendered provider
//! block always agree on region, profile and endpoint (`AWS_ENDPOINT_URL` included).

use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::config::AwsSettings;

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub ecs: aws_sdk_ecs::Client,
    pub iam: aws_sdk_iam::Client,
    pub route53: aws_sdk_route53::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub rds: aws_sdk_rds::Client,
    pub s3: aws_sdk_s3::Client,
    /// Best effort (run metrics): 2 attempts and 10 s at most, so an unreachable endpoint
    /// delays a finished run briefly instead of by the adaptive retries' minutes.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The audit trail's copy; best effort as `cloudwatch`.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Cost Explorer answers in us-east-1 only, whatever the tenants' region.
    pub cost_explorer: aws_sdk_costexplorer::Client,
}

impl AwsClients {
    pub async fn new(settings: &AwsSettings) -> AwsClients {
        let s = settings.effective();
        // Adaptive retries back off on throttling, which a fleet-wide audit triggers.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::adaptive().with_max_attempts(6));
        loader = loader.region(aws_config::Region::new(s.region_or_default()));
        if let Some(p) = &s.profile {
            loader = loader.profile_name(p);
        }
        if let Some(url) = &s.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        AwsClients::from_sdk_config(&loader.load().await)
    }

    /// Clients from an already loaded SDK configuration (an embedding program's own
    /// credentials, or a test's). An endpoint URL means an emulator: S3 is then addressed
    /// path-style.
    pub fn from_sdk_config(conf: &aws_config::SdkConfig) -> AwsClients {
        let s3_conf = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(conf.endpoint_url().is_some())
            .build();
        let best_effort_timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(10))
            .build();
        let cloudwatch_conf = aws_sdk_cloudwatch::config::Builder::from(conf)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(best_effort_timeouts.clone())
            .build();
        let logs_conf = aws_sdk_cloudwatchlogs::config::Builder::from(conf)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(best_effort_timeouts)
            .build();
        AwsClients {
            ecs: aws_sdk_ecs::Client::new(conf),
            iam: aws_sdk_iam::Client::new(conf),
            route53: aws_sdk_route53::Client::new(conf),
            secrets: aws_sdk_secretsmanager::Client::new(conf),
            rds: aws_sdk_rds::Client::new(conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch_conf),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(logs_conf),
            cost_explorer: aws_sdk_costexplorer::Client::from_conf(
                aws_sdk_costexplorer::config::Builder::from(conf)
                    .region(aws_config::Region::new("us-east-1"))
                    .build(),
            ),
        }
    }

    /// Reads a JSON secret. The value is returned to the caller only; errors name the
    /// secret, never its content.
    pub async fn secret_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(aws_sdk_secretsmanager::Error::from)
            .with_context(|| format!("cannot read secret `{name}`"))?;
        let text = out
            .secret_string()
            .with_context(|| format!("secret `{name}` has no string value"))?;
        // serde_json's error would quote a fragment of the input: keep only its position.
        serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "secret `{name}` is not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }
}

/// An SDK error meaning "no such thing" (a lookup by derived name found nothing), as
/// opposed to one that says the lookup itself failed.
pub fn is_not_found<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some(
            "NoSuchEntity"
                | "NoSuchEntityException"
                | "ResourceNotFoundException"
                | "DBInstanceNotFound"
                | "DBInstanceNotFoundFault"
                | "DBSubnetGroupNotFoundFault"
                | "ClientException"
                | "ServiceNotFoundException"
                | "NoSuchHostedZone"
        )
    )
}

/// An SDK error as one line: its code and message when it has them.
pub fn describe_error<E>(e: &E) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::fmt::Display,
{
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => e.to_string(),
    }
}
