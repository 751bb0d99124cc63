//! AWS SDK clients built from one settings struct, so the SDK and the rendered provider
//! block always agree on region, profile and endpoint (`AWS_ENDPOINT_URL` included).

use anyhow::{Context, Result};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;

use crate::config::AwsSettings;

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub ecs: aws_sdk_ecs::Client,
    pub iam: aws_sdk_iam::Client,
    pub route53: aws_sdk_route53::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub rds: aws_sdk_rds::Client,
    pub s3: aws_sdk_s3::Client,
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
        let conf = loader.load().await;
        let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(s.endpoint_url.is_some())
            .build();
        AwsClients {
            ecs: aws_sdk_ecs::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            route53: aws_sdk_route53::Client::new(&conf),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            rds: aws_sdk_rds::Client::new(&conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
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
