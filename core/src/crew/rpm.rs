//! Requests-per-minute limits (CrewAI's `RPMController`): at most `max` LLM calls in a
//! one-minute window; a caller over the limit waits for the next window.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

pub struct RpmLimiter {
    max: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    used: u32,
}

impl RpmLimiter {
    /// `None` for 0 (no sensible limit: CrewAI would wait forever).
    pub fn new(max: u32) -> Option<Self> {
        (max > 0).then(|| RpmLimiter {
            max,
            window: Mutex::new(Window {
                started: Instant::now(),
                used: 0,
            }),
        })
    }

    /// Waits until a request may be sent and counts it.
    pub async fn acquire(&self) {
        loop {
            let mut window = self.window.lock().await;
            let elapsed = window.started.elapsed();
            if elapsed >= WINDOW {
                window.started = Instant::now();
                window.used = 0;
            }
            if window.used < self.max {
                window.used += 1;
                return;
            }
            let wait = WINDOW.saturating_sub(elapsed);
            drop(window);
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "max RPM reached, waiting for the next minute"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_next_minute_when_the_window_is_full() {
        let limiter = RpmLimiter::new(2).expect("limit");
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert!(start.elapsed() < Duration::from_secs(1));
        limiter.acquire().await;
        assert!(start.elapsed() >= WINDOW);
        assert!(RpmLimiter::new(0).is_none());
    }
}
