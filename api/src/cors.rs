//! Cross-origin requests (CORS) for front ends served from another origin, allowed by
//! `CREWGRAPH_CORS_ORIGINS` (see `core::config::CorsOrigins`).
//!
//! Written here rather than taken from poem's `Cors`, which answers 403 to any request
//! whose `Origin` it does not allow — and browsers send `Origin` on same-origin POSTs too,
//! so the API's own Swagger UI would be refused. A request from an origin that is not
//! allowed is served as if CORS did not exist: without `Access-Control-*` headers, so the
//! browser keeps the answer from the foreign page. Outermost middleware: error responses
//! (a 401, a 429) carry the headers too, and the page can read their JSON body.

use crewgraph_core::config::CorsOrigins;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Methods and request headers a page may use.
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str =
    "authorization, content-type, if-match, if-none-match, last-event-id, x-api-key, x-request-id";
/// Response headers a page may read besides the simple ones.
const EXPOSED_HEADERS: &str = "etag, location, retry-after, x-request-id";
/// How long a browser may cache a preflight answer (seconds).
const PREFLIGHT_MAX_AGE: &str = "600";

pub struct Cors {
    origins: CorsOrigins,
}

impl Cors {
    pub fn new(origins: CorsOrigins) -> Self {
        Cors { origins }
    }
}

impl<E: Endpoint> Middleware<E> for Cors {
    type Output = CorsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        CorsEndpoint {
            inner,
            origins: self.origins.clone(),
        }
    }
}

pub struct CorsEndpoint<E> {
    inner: E,
    origins: CorsOrigins,
}

impl<E: Endpoint> Endpoint for CorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let allowed = req
            .headers()
            .get(header::ORIGIN)
            .filter(|origin| origin.to_str().is_ok_and(|o| self.origins.allows(o)))
            .cloned();
        let Some(origin) = allowed else {
            let mut response = self.inner.get_response(req).await;
            // Caches must not serve one origin's answer to another.
            vary_on_origin(&mut response);
            return Ok(response);
        };
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut response = if preflight {
            StatusCode::NO_CONTENT.into_response()
        } else {
            self.inner.get_response(req).await
        };
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
        } else {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        vary_on_origin(&mut response);
        Ok(response)
    }
}

fn vary_on_origin(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
}
