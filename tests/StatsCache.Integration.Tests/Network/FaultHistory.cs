using System.Collections.Concurrent;
using System.Globalization;

namespace StatsCache.Integration.Tests.Network;

/// <summary>One request of a fault scenario, as its caller saw it (times from the scenario's start).</summary>
public readonly record struct Reading(
    int Caller, int WebHost, int User, TimeSpan Sent, TimeSpan Received, int Status, long Orders, decimal Spent, bool Stale,
    bool HasRetryAfter, string? Error);

/// <summary>
/// The history of a fault scenario (every read and every write, with their times) and its checker: wrong answers,
/// answers older than the freshness bound without being marked stale, gaps, and how long every write took to show.
/// </summary>
/// <remarks>
/// The writes make every answer checkable. Each user starts with one order of a price unique to the user
/// (<see cref="SignatureOf"/>) and each write adds one order of price 1 to one user, from one writer, one at a time. So an
/// answer of <c>orders</c> and <c>spent</c> is someone's iff <c>spent - orders</c> is that user's signature, and it shows the
/// first <c>orders - 1</c> writes to the user, no more and no fewer.
/// </remarks>
public sealed class FaultHistory(int users)
{
    private readonly ConcurrentQueue<Reading> _readings = new();
    private readonly List<TimeSpan>[] _acknowledged = [.. Enumerable.Range(0, users).Select(_ => new List<TimeSpan>())];
    private readonly int[] _started = new int[users];

    /// <summary>The price of user <paramref name="user"/>'s first order, minus one: <c>spent - orders</c> of every answer of theirs.</summary>
    public static decimal SignatureOf(int user) => 1000 + user;

    public IReadOnlyCollection<Reading> Readings => _readings;

    public void Add(Reading reading) => _readings.Enqueue(reading);

    /// <summary>A write to <paramref name="user"/> is about to be sent: from now on an answer may show it.</summary>
    public void WriteStarting(int user) => Interlocked.Increment(ref _started[user]);

    /// <summary>A write to <paramref name="user"/> committed at <paramref name="at"/>: from now on a fresh answer must show it.</summary>
    public void WriteAcknowledged(int user, TimeSpan at)
    {
        lock (_acknowledged[user])
        {
            _acknowledged[user].Add(at);
        }
    }

    public int Writes => _acknowledged.Sum(w => w.Count);

    /// <summary>Checks every reading against the writes; see <see cref="Verdict"/>.</summary>
    /// <param name="freshnessBound">How old an answer not marked stale may be: the near-cache's lease plus the view's TTL.</param>
    /// <param name="faultStart">When the fault began.</param>
    /// <param name="healed">When it ended.</param>
    public Verdict Check(TimeSpan freshnessBound, TimeSpan faultStart, TimeSpan healed)
    {
        var readings = _readings.OrderBy(r => r.Sent).ToList();
        var answered = readings.Where(r => r.Status == 200).ToList();
        var wrong = new List<string>();
        var tooOld = new List<string>();
        foreach (var r in answered)
        {
            var shown = r.Orders - 1;
            if (r.Spent - r.Orders != SignatureOf(r.User))
            {
                wrong.Add(Describe(r, $"someone else's numbers (signature {r.Spent - r.Orders}, expected {SignatureOf(r.User)})"));
            }
            else if (shown < 0 || shown > Volatile.Read(ref _started[r.User]))
            {
                wrong.Add(Describe(r, $"{shown} writes shown, only {_started[r.User]} ever sent"));
            }
            else if (!r.Stale && AcknowledgedBefore(r.User, r.Sent - freshnessBound) > shown)
            {
                tooOld.Add(Describe(r, $"{shown} writes shown, not stale, but {AcknowledgedBefore(r.User, r.Sent - freshnessBound)} were committed {freshnessBound.TotalSeconds:F0} s before it was asked"));
            }
        }

        // Every write committed before the heal shows, on every web host, in the first answer asked after this long.
        var recovered = TimeSpan.Zero;
        var unrecovered = new List<string>();
        foreach (var pair in readings.Select(r => (r.User, r.WebHost)).Distinct())
        {
            var due = AcknowledgedBefore(pair.User, healed);
            var first = answered.FirstOrDefault(r => r.User == pair.User && r.WebHost == pair.WebHost && r.Sent >= healed && r.Orders - 1 >= due && !r.Stale);
            if (first == default)
            {
                unrecovered.Add($"user {pair.User} on web host {pair.WebHost}: never showed its {due} writes");
            }
            else if (first.Received - healed > recovered)
            {
                recovered = first.Received - healed;
            }
        }

        return new Verdict(
            Requests: readings.Count,
            NonOk: readings.Count(r => r.Status != 200),
            NonOkByStatus: readings.Where(r => r.Status != 200).GroupBy(r => r.Status).ToDictionary(g => g.Key, g => g.Count()),
            WithoutRetryAfter: readings.Count(r => r.Status == 503 && !r.HasRetryAfter),
            Errors: [.. readings.Where(r => r.Error is not null).Select(r => Describe(r, r.Error!))],
            Wrong: wrong,
            TooOld: tooOld,
            Stale: answered.Count(r => r.Stale),
            LongestGap: LongestGap(readings, faultStart, readings.Count == 0 ? healed : readings.Max(r => r.Received)),
            Slowest: readings.Count == 0 ? TimeSpan.Zero : readings.Max(r => r.Received - r.Sent),
            Recovered: unrecovered.Count == 0 ? recovered : null,
            Unrecovered: unrecovered);
    }

    /// <summary>The longest time any one caller went without a 200 answer between <paramref name="from"/> and <paramref name="to"/>.</summary>
    public static TimeSpan LongestGap(IEnumerable<Reading> readings, TimeSpan from, TimeSpan to)
    {
        var longest = TimeSpan.Zero;
        foreach (var caller in readings.GroupBy(r => r.Caller))
        {
            var last = from;
            foreach (var r in caller.Where(r => r.Status == 200 && r.Received >= from && r.Received <= to).OrderBy(r => r.Received))
            {
                longest = r.Received - last > longest ? r.Received - last : longest;
                last = r.Received;
            }

            longest = to - last > longest ? to - last : longest;
        }

        return longest;
    }

    private int AcknowledgedBefore(int user, TimeSpan at)
    {
        lock (_acknowledged[user])
        {
            return _acknowledged[user].Count(t => t < at);
        }
    }

    private static string Describe(Reading r, string what) => string.Create(CultureInfo.InvariantCulture,
        $"caller {r.Caller}, user {r.User}, web host {r.WebHost}, asked at {r.Sent.TotalSeconds:F2} s, answered {r.Status} at {r.Received.TotalSeconds:F2} s: {what}");
}

/// <summary>What a scenario's history shows.</summary>
public sealed record Verdict(
    int Requests,
    int NonOk,
    IReadOnlyDictionary<int, int> NonOkByStatus,
    int WithoutRetryAfter,
    IReadOnlyList<string> Errors,
    IReadOnlyList<string> Wrong,
    IReadOnlyList<string> TooOld,
    int Stale,
    TimeSpan LongestGap,
    TimeSpan Slowest,
    TimeSpan? Recovered,
    IReadOnlyList<string> Unrecovered)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Requests} requests, {NonOk} non-200 ({string.Join(", ", NonOkByStatus.Select(p => $"{p.Value}×{p.Key}"))}), " +
        $"{Errors.Count} without an answer, {Wrong.Count} wrong, {TooOld.Count} too old unmarked, {Stale} stale, " +
        $"longest gap {LongestGap.TotalSeconds:F1} s, slowest {Slowest.TotalSeconds:F1} s, " +
        $"recovered in {(Recovered is { } r ? $"{r.TotalSeconds:F1} s" : "never")}");
}
