//! One secret, two schemes, two tenants, in the database: a tenant whose
//! secret another tenant uses under another scheme is answered
//! `misconfigured` (see [`TenantMapError`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{UNTENANTED, db_error, key_from_row};
use crate::key::KeySet;
use crate::provider::{ProviderError, SchemeIndex, TenantMapError};

/// How old the index of every tenant's keys may be when a tenant is checked
/// against it. A tenant's own keys are always read fresh, so a conflict
/// created by changing one tenant's keys is seen at that tenant's next
/// lookup; a tenant on the other side of it is answered `misconfigured`
/// once this much time and its cache's TTL have passed.
pub(super) const INDEX_MAX_AGE: Duration = Duration::from_secs(30);

/// Every current key of every tenant (no secret, only keyed digests), at
/// most [`INDEX_MAX_AGE`] old. Read with one query, shared by all lookups.
const ALL_KEYS: &str = "SELECT tenant_id, key_id, scheme, over, secret, secret_encoding, \
     NULL::BIGINT, NULL::BIGINT FROM identity_keys WHERE not_after IS NULL OR not_after > now()";

/// The index of which tenant uses which secret under which scheme.
#[derive(Default)]
pub(super) struct SharedSecrets {
    index: Mutex<Option<(Instant, Arc<SchemeIndex>)>>,
}

impl SharedSecrets {
    /// The first of `keys`' secrets that another tenant uses under another scheme.
    pub(super) async fn conflict(
        &self,
        client: &tokio_postgres::Client,
        tenant: Option<&str>,
        keys: &KeySet,
    ) -> Result<Option<TenantMapError>, ProviderError> {
        Ok(self.index(client).await?.conflict(tenant, keys))
    }

    /// The index, read again when older than [`INDEX_MAX_AGE`]; concurrent
    /// lookups wait for one read.
    async fn index(&self, client: &tokio_postgres::Client) -> Result<Arc<SchemeIndex>, ProviderError> {
        let mut slot = self.index.lock().await;
        if let Some((read, index)) = &*slot
            && read.elapsed() < INDEX_MAX_AGE
        {
            return Ok(index.clone());
        }
        let rows = client.query(ALL_KEYS, &[]).await.map_err(db_error("reading every tenant's keys failed"))?;
        let mut index = SchemeIndex::default();
        for row in &rows {
            let tenant: String = row.get(0);
            // A key that cannot be read fails its own tenant's lookups instead.
            if let Ok(Some(key)) = key_from_row(row, 1, &tenant) {
                let keys = KeySet::single(key);
                index.add((tenant != UNTENANTED).then_some(tenant.as_str()), &keys);
            }
        }
        let index = Arc::new(index);
        *slot = Some((Instant::now(), index.clone()));
        Ok(index)
    }
}
