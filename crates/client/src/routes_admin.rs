//! Tenants, tokens, queues and pools.

use reqwest::Method;
use spillway_core::Result;
use spillway_core::api::{
    CreateQueue, CreateTenant, CreateToken, CreatedToken, PoolStatus, PoolUpdate, QueueView,
    ServerVersion,
};
use spillway_core::model::{Queue, QueueSettings, Tenant, TokenInfo};

use crate::Client;

impl Client {
    /// `POST /v1/tenants`: create a tenant.
    pub async fn tenant_create(&self, body: &CreateTenant) -> Result<Tenant> {
        self.send_json(self.request(Method::POST, &["v1", "tenants"]).json(body))
            .await
    }

    /// `GET /v1/tenants`: every tenant the caller may see.
    pub async fn tenant_list(&self) -> Result<Vec<Tenant>> {
        self.send_json(self.request(Method::GET, &["v1", "tenants"]))
            .await
    }

    /// `POST /v1/tokens`: create a token; its secret is in the answer only.
    pub async fn token_create(&self, body: &CreateToken) -> Result<CreatedToken> {
        self.send_json(self.request(Method::POST, &["v1", "tokens"]).json(body))
            .await
    }

    /// `GET /v1/tokens`: the tokens the caller may see, without secrets.
    pub async fn token_list(&self) -> Result<Vec<TokenInfo>> {
        self.send_json(self.request(Method::GET, &["v1", "tokens"]))
            .await
    }

    /// `DELETE /v1/tokens/{id}`: revoke a token.
    pub async fn token_delete(&self, id: &str) -> Result<()> {
        self.send_empty(self.request(Method::DELETE, &["v1", "tokens", id]))
            .await
    }

    /// `POST /v1/queues`: create a queue.
    pub async fn queue_create(&self, body: &CreateQueue) -> Result<Queue> {
        self.send_json(self.request(Method::POST, &["v1", "queues"]).json(body))
            .await
    }

    /// `GET /v1/queues`: every queue with its numbers.
    pub async fn queue_list(&self) -> Result<Vec<QueueView>> {
        self.send_json(self.request(Method::GET, &["v1", "queues"]))
            .await
    }

    /// `GET /v1/queues/{name}`: one queue with its numbers.
    pub async fn queue_get(&self, name: &str) -> Result<QueueView> {
        self.send_json(self.request(Method::GET, &["v1", "queues", name]))
            .await
    }

    /// `PATCH /v1/queues/{name}`: replace a queue's settings.
    pub async fn queue_update(&self, name: &str, settings: &QueueSettings) -> Result<Queue> {
        self.send_json(
            self.request(Method::PATCH, &["v1", "queues", name])
                .json(settings),
        )
        .await
    }

    /// `GET /v1/pools`: every autoscaled pool with its size, workers and latest decisions.
    pub async fn pool_list(&self) -> Result<Vec<PoolStatus>> {
        self.send_json(self.request(Method::GET, &["v1", "pools"]))
            .await
    }

    /// `PATCH /v1/pools/{name}`: change a pool's bounds (kept across restarts), or reset them.
    pub async fn pool_update(&self, name: &str, body: &PoolUpdate) -> Result<PoolStatus> {
        self.send_json(
            self.request(Method::PATCH, &["v1", "pools", name])
                .json(body),
        )
        .await
    }

    /// `GET /v1/openapi.json`: the OpenAPI document of the server.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.send_json(self.request(Method::GET, &["v1", "openapi.json"]))
            .await
    }

    /// `GET /v1/version`: the server's version (needs no token).
    pub async fn version(&self) -> Result<ServerVersion> {
        self.send_json(self.request(Method::GET, &["v1", "version"]))
            .await
    }

    /// `GET /healthz`: succeeds when the server process answers.
    pub async fn healthz(&self) -> Result<()> {
        self.send_empty(self.request(Method::GET, &["healthz"]))
            .await
    }

    /// `GET /readyz`: succeeds when the server can reach its store.
    pub async fn readyz(&self) -> Result<()> {
        self.send_empty(self.request(Method::GET, &["readyz"]))
            .await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String> {
        self.send_text(self.request(Method::GET, &["metrics"]))
            .await
    }
}
