using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;

namespace StatsCache.Integration.Tests;

/// <summary>Keeps every log entry a host writes (at every level it lets through), for tests to search.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<Entry> _entries = new();

    public IReadOnlyCollection<Entry> Entries => _entries;

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

    public void Dispose()
    {
    }

    /// <summary>One entry: its message, its structured values and its exception, as text.</summary>
    public sealed record Entry(string Category, LogLevel Level, string Message, IReadOnlyDictionary<string, string?> Values, Exception? Exception)
    {
        public string AllText()
        {
            var text = new StringBuilder(Category).Append(' ').Append(Message);
            foreach (var (key, value) in Values)
            {
                text.Append(' ').Append(key).Append('=').Append(value);
            }

            return text.Append(' ').Append(Exception?.ToString()).ToString();
        }
    }

    private sealed class Logger(string category, ConcurrentQueue<Entry> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = new Dictionary<string, string?>(StringComparer.Ordinal);
            if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (var (key, value) in pairs)
                {
                    values[key] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), values, exception));
        }
    }
}
