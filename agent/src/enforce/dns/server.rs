//! The sinkhole's request handler on hickory-server: a query for a sinkholed name is
//! answered here (NXDOMAIN, or the configured sinkhole address), counted and turned into a
//! rate-limited [`Alert`] naming the client; every other query goes to hickory's
//! forwarding zone handler (a [`Catalog`] with the root zone forwarded to the upstreams).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use tokio::sync::{Semaphore, mpsc};

use super::DnsMetrics;
use super::domains::DomainSet;
use super::hits::{DomainLabels, HitLimiter, Verdict};
use crate::detect::{Action, Alert, Evidence, RuleRef, Severity};

/// What the sinkhole answers for a sinkholed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SinkholeAnswer {
    pub(super) ipv4: Option<Ipv4Addr>,
    pub(super) ipv6: Option<Ipv6Addr>,
    /// TTL of the sinkhole address records. NXDOMAIN carries no SOA, so resolvers behind
    /// us do not cache it (RFC 2308) and a lifted decision takes effect at once.
    pub(super) ttl: u32,
}

/// What the handler and the [`super::SinkholeHandle`] share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The current generation of the set; replaced whole by `SinkholeHandle::set`.
    pub(super) set: RwLock<Arc<DomainSet>>,
    pub(super) answer: SinkholeAnswer,
    pub(super) limiter: Mutex<HitLimiter>,
    pub(super) labels: Mutex<DomainLabels>,
    pub(super) alerts: mpsc::Sender<Alert>,
    pub(super) metrics: DnsMetrics,
    pub(super) max_domains: usize,
}

impl Shared {
    pub(super) fn current(&self) -> Arc<DomainSet> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Counts a hit and, unless the limiter holds it back, sends its alert without waiting
    /// (a full alert queue must not slow DNS answers down; the miss is counted).
    fn hit(
        &self,
        now: SystemTime,
        client: SocketAddr,
        domain: &str,
        name: &Name,
        qtype: RecordType,
    ) {
        {
            let mut labels = self
                .labels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let label = labels.label(domain);
            self.metrics.hits.with_label_values(&[label]).inc();
        }
        let verdict = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hit(now, client.ip(), domain);
        let repeats = match verdict {
            Verdict::Alert { repeats } => repeats,
            Verdict::Suppressed => {
                self.metrics.alerts.with_label_values(&["suppressed"]).inc();
                return;
            }
            Verdict::TableFull => {
                self.metrics.alerts.with_label_values(&["table_full"]).inc();
                return;
            }
        };
        let alert = Alert {
            rule: RuleRef::Sinkhole {
                domain: domain.to_owned(),
            },
            // A sinkhole hit says the client is likely infected or misused, not that it
            // attacks: it is reported, never a reason to block the client by itself.
            action: Action::Alert,
            severity: Severity::Medium,
            src: Some(client.ip()),
            src_port: Some(client.port()),
            dst: None,
            dst_port: None,
            time: now,
            evidence: Evidence::DnsQuery {
                name: name.to_string(),
                qtype: qtype.to_string(),
                repeats,
            },
        };
        let outcome = match self.alerts.try_send(alert) {
            Ok(()) => "sent",
            Err(mpsc::error::TrySendError::Full(_)) => "queue_full",
            Err(mpsc::error::TrySendError::Closed(_)) => "closed",
        };
        self.metrics.alerts.with_label_values(&[outcome]).inc();
    }
}

/// The hickory request handler.
pub(super) struct Handler {
    pub(super) shared: Arc<Shared>,
    /// The root zone, forwarded to the upstreams.
    pub(super) forward: Catalog,
    /// Requests being answered at most; more are refused at once (and counted), since
    /// hickory spawns a task per UDP datagram without a bound of its own.
    pub(super) inflight: Semaphore,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let Ok(_permit) = self.inflight.try_acquire() else {
            self.shared
                .metrics
                .queries
                .with_label_values(&["busy"])
                .inc();
            return respond_code(request, ResponseCode::Refused, response_handle).await;
        };
        let is_query = request.metadata.message_type == MessageType::Query
            && request.metadata.op_code == OpCode::Query;
        if is_query && let Ok(info) = request.request_info() {
            let now = SystemTime::now();
            let set = self.shared.current();
            let name_text = info.query.name().to_string();
            if let Some((domain, _source)) = set.lookup(&name_text, now) {
                let name = Name::from(info.query.name());
                let qtype = info.query.query_type();
                self.shared
                    .metrics
                    .queries
                    .with_label_values(&["sinkholed"])
                    .inc();
                self.shared.hit(now, request.src(), domain, &name, qtype);
                return self.sinkhole(request, name, qtype, response_handle).await;
            }
        }
        self.shared
            .metrics
            .queries
            .with_label_values(&["forwarded"])
            .inc();
        self.forward
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

impl Handler {
    async fn sinkhole<R: ResponseHandler>(
        &self,
        request: &Request,
        name: Name,
        qtype: RecordType,
        mut response_handle: R,
    ) -> ResponseInfo {
        let answer = self.shared.answer;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        metadata.authoritative = false;
        let records: Vec<Record> = match (qtype, answer.ipv4, answer.ipv6) {
            (RecordType::A, Some(ip), _) => {
                vec![Record::from_rdata(name, answer.ttl, RData::A(A(ip)))]
            }
            (RecordType::AAAA, _, Some(ip)) => {
                vec![Record::from_rdata(name, answer.ttl, RData::AAAA(AAAA(ip)))]
            }
            _ => Vec::new(),
        };
        // With a sinkhole address configured the name "exists" (NOERROR, possibly with no
        // record of the asked type); without one it does not.
        metadata.response_code = if answer.ipv4.is_none() && answer.ipv6.is_none() {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        let edns = response_edns(request);
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(err) => {
                tracing::debug!(%err, "cannot send the sinkhole answer");
                failed(request)
            }
        }
    }
}

/// An EDNS section for the answer when the query had one (RFC 6891 says it must).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns
    })
}

async fn respond_code<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let edns = response_edns(request);
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref())
        .error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => failed(request),
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// How long an answer waits, at most, for the upstreams (also hickory's default).
pub(super) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
