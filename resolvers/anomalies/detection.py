"""The statistics of spend anomalies: what a scope's spend in an hour or a day was expected to be, how surprising
the actual is, and which key, user, model or team explains the excess. Pure CPU work on arrays; `resolvers.
anomalies` reads the series and stores what this finds.

Expected spend comes from a seasonal-trend decomposition (statsmodels' robust STL, Cleveland et al. 1990) fitted
on the history *before* the evaluated bucket, so an anomaly never hides in its own fit:

- Hourly: the 14 days before the evaluated hour's UTC day, only days of the same kind (weekdays for a weekday,
  Saturdays and Sundays for a weekend day; spend at the weekend differs from the week's, and a decomposition that
  ignored that would find every Monday morning unusual), concatenated and decomposed with a daily cycle
  (period 24). The day's expected hourly spend is the trend at the end plus each hour's seasonal component.
- Daily: the 56 days before the evaluated day, decomposed with a weekly cycle (period 7); expected is the trend
  at the end plus the seasonal component of the same weekday.

Spend is count-like (requests times their cost), so its noise grows with its level: a busy afternoon varies by
more dollars than a quiet night. The decomposition therefore works on the square root of spend (Box-Cox with
lambda = 1/2, the variance-stabilising transform of counts), where the noise is about as large at night as in the
day; expected spend is the decomposition's expectation squared back into USD.

The surprise is a robust z-score on that scale: (sqrt(actual) - sqrt(expected)) / scale, where scale is 1.4826 x
the median absolute
deviation of the decomposition's residuals (the MAD, consistent with a standard deviation for Gaussian noise),
floored at 1.2533 x their mean absolute deviation (the same for Gaussian noise, but above 0 for sparse series
whose residuals are mostly exactly 0). A bucket is an anomaly when z reaches the threshold (sensitivity) and the
excess is at least the minimum in USD. Only spend above the expected is an anomaly: these are cost alerts.

The requests must explain the excess too (`Requests`, `judge`): the hourly spend's scale cannot know that one
request can cost what the scope spends in a week. A bucket whose most expensive request is one of a size the scope
has paid before is judged without it; and the requests must be unusual in number (a negative-binomial predictive
from the counts at the same position of the history) or in cost per request (the others' mean cost as a lognormal
mean of the scope's request costs, and the most expensive one alone against a lognormal fitted to the scope's
request costs of the 14 days before, `fit_request_costs`), at the same threshold. Daily buckets (the rollup
keeps no most expensive request) need an unusual count.

The driver: for every key, user, model and team under the scope (other than the scope's own kind), its spend in
the bucket minus its mean spend in the same position of the history (the same hour of the same kind of day; the
same weekday), and the one with the largest increase (the finest of those within 5% of it: a key before a user,
a model, a team), with its share of the scope's whole excess.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import cached_property, lru_cache

import numpy as np
from numpy.typing import NDArray

Series = NDArray[np.float64]

HOURLY_HISTORY_DAYS = 14
DAILY_HISTORY_DAYS = 56
#: Fewer days of history (of the same kind, for hourly) than this are too few to decompose.
MIN_HOURLY_DAYS = 3
MIN_DAILY_DAYS = 21
MAD_TO_SIGMA = 1.4826
MEAN_ABS_TO_SIGMA = 1.2533


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True)
class Expectation:
    """Expected spend (USD) per bucket of the evaluated period (24 hours, or one day) and the robust scale of the
    residuals (on the square-root scale the decomposition works on)."""

    expected: Series
    scale: float


def _decompose(values: Series, period: int) -> tuple[Series, Series, Series]:
    from statsmodels.tsa.seasonal import STL

    # STL warns on nothing useful here; robust=True downweights past outliers so they do not shape the expectation.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = STL(values, period=period, robust=True).fit()
    return (
        np.asarray(fit.trend, dtype=np.float64),
        np.asarray(fit.seasonal, dtype=np.float64),
        np.asarray(fit.resid, dtype=np.float64),
    )


def robust_scale(residuals: Series) -> float:
    centre = float(np.median(residuals))
    mad = float(np.median(np.abs(residuals - centre))) * MAD_TO_SIGMA
    mean_abs = float(np.mean(np.abs(residuals - centre))) * MEAN_ABS_TO_SIGMA
    return max(mad, mean_abs)


def same_kind(day: date, other: date) -> bool:
    return (day.weekday() >= 5) == (other.weekday() >= 5)


def hourly_days(day: date) -> list[date]:
    """The history days an hourly expectation for `day` is fitted on (oldest first)."""
    days = [day - timedelta(days=k) for k in range(HOURLY_HISTORY_DAYS, 0, -1)]
    return [d for d in days if same_kind(day, d)]


def hourly_expectation(day: date, hours: Mapping[date, Series]) -> Expectation | None:
    """`hours`: 24 hourly amounts per history day (missing days count as no spend)."""
    days = hourly_days(day)
    if len(days) < MIN_HOURLY_DAYS:
        return None
    values = np.concatenate([hours.get(d, np.zeros(24)) for d in days])
    if not values.any():
        return None
    trend, seasonal, residuals = _decompose(np.sqrt(np.clip(values, 0.0, None)), 24)
    expected = np.clip(trend[-1] + seasonal[-24:], 0.0, None)
    return Expectation(expected**2, robust_scale(residuals))


def daily_expectation(history: Series) -> Expectation | None:
    """`history`: daily amounts of the DAILY_HISTORY_DAYS days before the evaluated day, oldest first."""
    if len(history) < MIN_DAILY_DAYS or not history.any():
        return None
    trend, seasonal, residuals = _decompose(np.sqrt(np.clip(history, 0.0, None)), 7)
    expected = max(0.0, float(trend[-1] + seasonal[-7]))
    return Expectation(np.array([expected**2]), robust_scale(residuals))


#: The spread (sigma of log cost) a fit may take: a scope whose requests all cost about the same still gets a
#: spread of 5% (a record 20% above its usual cost is not four sigmas), and none is wider than costs ever are.
MIN_COST_SIGMA = 0.05
MAX_COST_SIGMA = 10.0
HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


@dataclass(frozen=True)
class CostTail:
    """A scope's request costs as a lognormal, ln(cost) ~ Normal(mu, sigma), fitted on `buckets` history buckets
    holding `requests` requests. A cost is judged by the predictive of the fit, not the fit alone: a Student t with
    `buckets` - 1 degrees of freedom and a scale widened by sqrt(1 + 1/buckets) (the predictive of a normal sample
    of that size), so a fit on a few buckets claims no far tail it has not seen."""

    mu: float
    sigma: float
    requests: int
    buckets: int

    def exceedance(self, usd: float) -> float:
        """The probability that one request costs more than `usd`."""
        from scipy.stats import t

        if usd <= 0:
            return 1.0
        z = (float(np.log(usd)) - self.mu) / (self.sigma * np.sqrt(1 + 1 / self.buckets))
        return float(t.sf(z, self.buckets - 1))

    def max_exceedance(self, usd: float, count: int) -> float:
        """The probability that the most expensive of `count` requests costs more than `usd`: 1 - (1 - p)^count."""
        chance = self.exceedance(usd)
        if count <= 0 or chance >= 1:
            return 1.0
        return float(-np.expm1(count * np.log1p(-chance)))


def fit_request_costs(maxima: Series, counts: Series) -> CostTail | None:
    """`_fit_request_costs`, remembered for the last few windows: every hour of a scope's day is judged against the
    same 14 days before it, so a scan fits each scope's window once however many of its hours pay a record."""
    return _fit_request_costs(maxima.astype(np.float64).tobytes(), counts.astype(np.float64).tobytes())


@lru_cache(maxsize=64)
def _fit_request_costs(maxima_bytes: bytes, counts_bytes: bytes) -> CostTail | None:
    """The scope's request costs as a lognormal, fitted by maximum likelihood to its history buckets' most expensive
    requests (what the raw logs are grouped into: each bucket's count n and its dearest request m). The dearest of n
    draws has density n F(m)^(n-1) f(m), so a bucket of many requests weighs its peak as the maximum of many, and
    the fit describes one request, not an hour's peak: a broad scope (a model many teams use) has narrow hourly
    peaks but requests as spread as anyone's. The fit rests on the upper part of the costs, the part a record is
    judged against. None with fewer than two buckets of distinct peaks."""
    from scipy.optimize import minimize
    from scipy.special import log_ndtr

    maxima, counts = np.frombuffer(maxima_bytes), np.frombuffer(counts_bytes)
    busy = (counts > 0) & (maxima > 0)
    if busy.sum() < 2:
        return None
    logs = np.log(maxima[busy])
    n = counts[busy]
    if float(logs.max() - logs.min()) <= 0:
        return None

    def negative_log_likelihood(params: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        mu, log_sigma = float(params[0]), float(params[1])
        z = (logs - mu) / np.exp(log_sigma)
        log_cdf = log_ndtr(z)
        value = np.sum((n - 1) * log_cdf - z * z / 2) - logs.size * log_sigma
        slope = (n - 1) * np.exp(-z * z / 2 - HALF_LOG_2PI - log_cdf) - z  # d/dz of each bucket's term
        gradient = np.array([-float(np.sum(slope)) / np.exp(log_sigma), -float(np.sum(slope * z)) - logs.size])
        return -float(value), -gradient

    sd = float(np.clip(logs.std(ddof=1), MIN_COST_SIGMA, MAX_COST_SIGMA))
    # A start near the answer: the peaks of n draws sit about sigma x sqrt(2 ln n) above the mean.
    start = np.array([float(np.mean(logs - sd * np.sqrt(2 * np.log(np.maximum(n, 1.0))))), np.log(sd)])
    bounds = [(None, None), (np.log(MIN_COST_SIGMA), np.log(MAX_COST_SIGMA))]
    fit = minimize(negative_log_likelihood, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return CostTail(float(fit.x[0]), float(np.exp(fit.x[1])), int(n.sum()), int(logs.size))


@dataclass(frozen=True)
class Requests:
    """What a scope's requests say about a bucket (LiteLLM logs one row per request, so the rollup and the raw logs
    count them): the bucket's request count, the counts at the same position of the history (the same hour of the
    same kind of day; the same weekday), and the scope's per-request cost over the whole history (every history
    bucket's spend and count)."""

    count: int
    same_position: Series
    cost_mean: float  # USD per request: history spend / history requests
    cost_sd: float  # USD: sqrt(sum over buckets (spend - count x mean)^2 / requests), the compound-Poisson moment
    cost_max: float  # USD: the highest spend per request of any history bucket
    #: Where the buckets' most expensive requests are known (hourly): the bucket's, and the history buckets'.
    largest: float | None = None
    history_largest: Series | None = None
    #: The most expensive request and the request count of every bucket of the history window, every kind of day
    #: (what one request costs does not follow the week as their number does), which `cost_tail` is fitted to;
    #: `history_largest`, each a single request, when not given.
    peaks: Series | None = None
    peak_counts: Series | None = None

    @cached_property
    def cost_tail(self) -> CostTail | None:
        """The scope's request costs as a lognormal fitted to its history buckets' most expensive requests."""
        peaks = self.history_largest if self.peaks is None else self.peaks
        if peaks is None:
            return None
        counts = np.ones_like(peaks) if self.peak_counts is None else self.peak_counts
        return fit_request_costs(peaks, counts)

    @property
    def paid_before(self) -> bool:
        """The bucket's most expensive request costs no more than one the scope paid in its history."""
        return (
            self.largest is not None
            and self.history_largest is not None
            and self.history_largest.size > 0
            and 0 < self.largest <= float(self.history_largest.max())
        )


def requests_of(
    count: int,
    same_position: Series,
    spend: Series,
    counts: Series,
    largest: float | None = None,
    history_largest: Series | None = None,
    peaks: tuple[Series, Series] | None = None,
) -> Requests:
    """`spend` and `counts`: the scope's history buckets (USD, requests); `history_largest` aligned with them;
    `peaks`: the most expensive request and the count of every bucket of the history window (`Requests.peaks`)."""
    peak, peak_counts = (None, None) if peaks is None else peaks
    total = float(counts.sum())
    if total <= 0:
        return Requests(count, same_position, 0.0, 0.0, 0.0, largest, history_largest, peak, peak_counts)
    mean = float(spend.sum()) / total
    sd = float(np.sqrt(np.sum((spend - counts * mean) ** 2) / total))
    busy = counts > 0
    top = float(np.max(spend[busy] / counts[busy]))
    return Requests(count, same_position, mean, sd, top, largest, history_largest, peak, peak_counts)


#: The Jeffreys prior of a Poisson rate: Gamma(1/2, 0), so a position with no request in its history still
#: expects a little traffic, with the uncertainty of having seen none.
RATE_PRIOR_SHAPE = 0.5


def expected_count(same_position: Series) -> float:
    return (RATE_PRIOR_SHAPE + float(same_position.sum())) / len(same_position) if len(same_position) else 0.0


def count_score(count: int, same_position: Series) -> float:
    """How unusual a bucket's request count is, as a z (the standard normal quantile of its upper tail): the
    count's negative-binomial predictive distribution (a Poisson rate with a Gamma posterior from the counts at the
    same position of the history), so a position seen only a few times is judged with the uncertainty that
    leaves."""
    from scipy.stats import nbinom, norm

    m = len(same_position)
    if count <= 0 or m == 0:
        return 0.0
    shape = RATE_PRIOR_SHAPE + float(same_position.sum())
    tail = float(nbinom.sf(count - 1, shape, m / (m + 1.0)))
    return min(float(norm.isf(tail)), 1e6) if tail > 0 else 1e6


def cost_score(spend: float, count: int, requests: Requests) -> float:
    """How unusual a bucket's spend per request is, as a z: the mean of `count` draws from the scope's request
    costs (their mean and standard deviation over the history). Request costs are heavy-tailed (a long answer from
    an expensive model costs a hundred cheap ones), so the mean of a few of them is far from normal: it is taken as
    lognormal with the same mean and variance (Fenton and Wilkinson's approximation of a sum of lognormals), which
    tends to the normal as the count grows. 0 unless the spend per request is above that of every history bucket:
    a cost per request the scope has already paid in some bucket is explained by its own distribution."""
    if count <= 0 or requests.cost_mean <= 0:
        return 0.0
    per_request = spend / count
    if per_request <= requests.cost_max:
        return 0.0
    if requests.cost_sd <= 0:
        return 1e6
    sigma2 = float(np.log1p(requests.cost_sd**2 / (count * requests.cost_mean**2)))
    mu = float(np.log(requests.cost_mean)) - sigma2 / 2
    return min((float(np.log(per_request)) - mu) / float(np.sqrt(sigma2)), 1e6)


@dataclass(frozen=True)
class Verdict:
    actual: float
    expected: float
    score: float
    #: Set when the requests were known: their count and the count expected, and the two scores.
    requests: int | None = None
    expected_requests: float | None = None
    count_score: float | None = None
    cost_score: float | None = None
    #: Set when the bucket's most expensive request was judged alone (`largest_score`): its cost, its z, and how
    #: rare one request that dear is among the scope's (1 in `largest_one_in`, by the fitted lognormal).
    largest: float | None = None
    largest_score: float | None = None
    largest_one_in: float | None = None

    @property
    def excess(self) -> float:
        return self.actual - self.expected


def remaining(actual: float, requests: Requests) -> tuple[float, int]:
    """The bucket's spend and count without its most expensive request when the scope has paid one that size
    before (`Requests.paid_before`); else all of them."""
    if requests.paid_before and requests.largest is not None:
        return actual - requests.largest, requests.count - 1
    return actual, requests.count


def largest_score(requests: Requests) -> float:
    """How unusual the bucket's most expensive request is, as a z: the probability that the dearest of the bucket's
    requests costs that much or more, when each costs what the scope's requests cost (`Requests.cost_tail`, a
    lognormal fitted to the history's requests), so a bucket of many requests is allowed a dearer peak than a
    bucket of one. A new dearest request is an event of every few days in a history of thousands, not an anomaly,
    unless it is far out in the scope's own tail."""
    from scipy.stats import norm

    tail = requests.cost_tail
    if requests.largest is None or requests.largest <= 0 or tail is None:
        return 0.0
    chance = tail.max_exceedance(requests.largest, max(requests.count, 1))
    return min(float(norm.isf(chance)), 1e6) if chance > 0 else 1e6


def request_scores(actual: float, requests: Requests) -> tuple[float, float]:
    """The count and cost-per-request z of the bucket's `remaining` requests. They need no expected spend, so the
    scan checks them before it fits a decomposition: most buckets are ordinary in both.

    The cost per request is that of the requests other than the most expensive, which is judged alone
    (`largest_score`): the cost evidence never rests on one request. So it needs the most expensive request,
    which hourly buckets carry and the daily rollup does not: a daily anomaly needs an unusual count."""
    spend, count = remaining(actual, requests)
    by_count = count_score(count, requests.same_position)
    if requests.largest is None:
        return by_count, 0.0  # daily: the rollup keeps no most expensive request, so only the count can speak
    if count < requests.count:
        return by_count, cost_score(spend, count, requests)
    others = cost_score(spend - requests.largest, count - 1, requests)
    return by_count, max(others, largest_score(requests))


def spend_score(actual: float, expected: float, scale: float) -> float:
    """The robust z of spend, on the square-root scale."""
    rise = float(np.sqrt(max(actual, 0.0)) - np.sqrt(max(expected, 0.0)))
    return min(rise / scale if scale > 0 else float("inf"), 1e6)


def judge(
    actual: float,
    expected: float,
    scale: float,
    threshold: float,
    min_usd: float,
    requests: Requests | None = None,
) -> Verdict | None:
    """An anomaly when the robust z of spend reaches `threshold` and the excess is at least `min_usd`, and, when
    `requests` are known, the requests explain it:

    - when the bucket's most expensive request is one of a size the scope has paid before, the spend without it
      must still be an anomaly by those two rules (an excess that rests on one such request is the scope's own
      cost distribution at work, not an anomaly: the hourly spend's scale cannot know one request can cost what
      the scope spends in a week);
    - and the (remaining) requests are unusual in number (`count_score`) or in cost per request (`cost_score`),
      either at `threshold`.

    Else None."""
    excess = actual - expected
    if excess < min_usd or excess <= 0:
        return None
    score = spend_score(actual, expected, scale)
    if score < threshold:
        return None
    if requests is None:
        return Verdict(actual, expected, score)
    spend, count = remaining(actual, requests)
    if count < requests.count and (spend - expected < min_usd or spend_score(spend, expected, scale) < threshold):
        return None
    by_count, by_cost = request_scores(actual, requests)
    if by_count < threshold and by_cost < threshold:
        return None
    dearest: tuple[float | None, float | None, float | None] = (None, None, None)
    tail = requests.cost_tail
    if requests.largest is not None and requests.largest > 0 and count == requests.count and tail is not None:
        chance = tail.exceedance(requests.largest)
        dearest = (requests.largest, largest_score(requests), min(1 / chance, 1e12) if chance > 0 else 1e12)
    return Verdict(
        actual, expected, score, requests.count, expected_count(requests.same_position), by_count, by_cost, *dearest
    )


@dataclass(frozen=True)
class Driver:
    kind: str
    id: str
    excess: float
    share: float


#: When several sub-scopes explain about as much (within DRIVER_TIE), the finest is named: a key belongs to one
#: user and one team, so "this key" says more than "this team".
DRIVER_PREFERENCE = ("key", "user", "model", "team")
DRIVER_TIE = 0.95


def driver(
    excess: float, now: Mapping[tuple[str, str], float], baseline: Mapping[tuple[str, str], float]
) -> Driver | None:
    """The sub-scope (kind, id) whose spend rose most over its baseline, and its share of the scope's excess."""
    rises = {key: now.get(key, 0.0) - baseline.get(key, 0.0) for key in set(now) | set(baseline)}
    if not rises or max(rises.values()) <= 0:
        return None
    top = max(rises.values())
    close = [key for key, rise in rises.items() if rise >= DRIVER_TIE * top]
    kind, ident = min(close, key=lambda k: (DRIVER_PREFERENCE.index(k[0]), -rises[k], k[1]))
    rise = rises[(kind, ident)]
    return Driver(kind, ident, rise, min(1.0, rise / excess) if excess > 0 else 1.0)
