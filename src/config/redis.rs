//! Where the cluster's Redis is: one server, a Redis Cluster, or a primary found through
//! Sentinel. `rediss://` (TLS) works in every mode.

/// The Redis deployment an instance shares its sessions through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis = "redis://host:port"`: one server (or a proxy in front of one).
    Single(String),
    /// `redis_cluster = ["redis://h1:p1", …]`: seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
    /// `redis_sentinel = ["redis://s1:26379", …]` and `redis_sentinel_master`: the primary of a
    /// primary/replica set, as the sentinels name it, followed through failovers.
    Sentinel { master: String, sentinels: Vec<String> },
}

/// The master name Sentinel setups use unless told otherwise.
pub const DEFAULT_SENTINEL_MASTER: &str = "mymaster";

impl RedisTarget {
    /// The target the config keys name; at most one mode may be set. Errors name the key.
    pub(crate) fn from_keys(
        single: Option<String>,
        cluster: Vec<String>,
        sentinels: Vec<String>,
        master: Option<String>,
    ) -> Result<Option<RedisTarget>, (&'static str, String)> {
        let modes = [single.is_some(), !cluster.is_empty(), !sentinels.is_empty()];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(("redis", "set one of `redis`, `redis_cluster` and `redis_sentinel`, not several".into()));
        }
        if master.is_some() && sentinels.is_empty() {
            return Err(("redis_sentinel_master", "is only used with `redis_sentinel`".into()));
        }
        let check = |key: &'static str, urls: &[String]| match urls
            .iter()
            .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            Some(bad) => Err((key, format!("`{bad}` is not a redis:// or rediss:// URL"))),
            None => Ok(()),
        };
        if let Some(url) = single {
            check("redis", std::slice::from_ref(&url))?;
            return Ok(Some(RedisTarget::Single(url)));
        }
        if !cluster.is_empty() {
            check("redis_cluster", &cluster)?;
            return Ok(Some(RedisTarget::Cluster(cluster)));
        }
        if !sentinels.is_empty() {
            check("redis_sentinel", &sentinels)?;
            let master = master.unwrap_or_else(|| DEFAULT_SENTINEL_MASTER.to_string());
            return Ok(Some(RedisTarget::Sentinel { master, sentinels }));
        }
        Ok(None)
    }

    /// A comma-separated list of URLs (as the command line takes them).
    pub fn split(urls: &str) -> Vec<String> {
        urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
    }

    pub fn mode(&self) -> &'static str {
        match self {
            RedisTarget::Single(_) => "single",
            RedisTarget::Cluster(_) => "cluster",
            RedisTarget::Sentinel { .. } => "sentinel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    fn urls(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_mode_from_its_keys() {
        let single = RedisTarget::from_keys(Some("redis://h:1".into()), vec![], vec![], None);
        assert_eq!(single, Ok(Some(RedisTarget::Single("redis://h:1".into()))));
        let cluster = RedisTarget::from_keys(None, urls(&["redis://a:1", "rediss://b:2"]), vec![], None);
        assert_eq!(cluster, Ok(Some(RedisTarget::Cluster(urls(&["redis://a:1", "rediss://b:2"])))));
        let sentinel = RedisTarget::from_keys(None, vec![], urls(&["redis://s:26379"]), None);
        let want = RedisTarget::Sentinel { master: "mymaster".into(), sentinels: urls(&["redis://s:26379"]) };
        assert_eq!(sentinel, Ok(Some(want)));
        let named = RedisTarget::from_keys(None, vec![], urls(&["redis://s:26379"]), Some("m2".into())).unwrap();
        assert!(matches!(named, Some(RedisTarget::Sentinel { master, .. }) if master == "m2"));
        assert_eq!(RedisTarget::from_keys(None, vec![], vec![], None), Ok(None));
    }

    #[test]
    fn two_modes_a_stray_master_name_and_a_bad_url_are_refused_by_key() {
        let two = RedisTarget::from_keys(Some("redis://h".into()), urls(&["redis://a"]), vec![], None);
        assert_eq!(two.unwrap_err().0, "redis");
        let stray = RedisTarget::from_keys(Some("redis://h".into()), vec![], vec![], Some("m".into()));
        assert_eq!(stray.unwrap_err().0, "redis_sentinel_master");
        let bad = RedisTarget::from_keys(None, urls(&["redis://a", "http://b"]), vec![], None).unwrap_err();
        assert_eq!(bad.0, "redis_cluster");
        assert!(bad.1.contains("http://b"), "{}", bad.1);
    }

    #[test]
    fn split_takes_comma_separated_urls() {
        assert_eq!(RedisTarget::split("redis://a:1, redis://b:2,"), urls(&["redis://a:1", "redis://b:2"]));
    }
}
