using System.Text.Json;
using System.Text.Json.Nodes;

namespace StatsCache.Benchmarks;

/// <summary>One figure of the table: what was measured, the goal (if any), and whether it was met.</summary>
public sealed record ReportRow(string Scenario, string Measure, string Goal, string Measured, bool? Met, double? Value = null);

/// <summary>The table bench.sh prints, and the same figures as JSON (plus each scenario's raw details).</summary>
public sealed class Report
{
    private readonly List<ReportRow> _rows = [];
    private readonly JsonObject _details = [];

    public void Add(ReportRow row)
    {
        _rows.Add(row);
        Console.WriteLine($"  {row.Scenario,-9} {row.Measure,-52} {row.Measured}");
    }

    public void Detail(string scenario, JsonNode node) => _details[scenario] = node;

    public void Print(TextWriter output)
    {
        string[] headers = ["scenario", "measure", "goal", "measured", "met"];
        var cells = _rows.Select(r => new[] { r.Scenario, r.Measure, r.Goal, r.Measured, r.Met switch { true => "yes", false => "NO", null => "—" } }).ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, cells.Count == 0 ? 0 : cells.Max(c => c[i].Length))).ToArray();
        output.WriteLine();
        output.WriteLine("| " + string.Join(" | ", headers.Select((h, i) => h.PadRight(widths[i]))) + " |");
        output.WriteLine("| " + string.Join(" | ", widths.Select(w => new string('-', w))) + " |");
        foreach (var row in cells)
        {
            output.WriteLine("| " + string.Join(" | ", row.Select((c, i) => c.PadRight(widths[i]))) + " |");
        }
    }

    public void WriteJson(string path, JsonObject machine)
    {
        var json = new JsonObject
        {
            ["machine"] = machine,
            ["rows"] = new JsonArray([.. _rows.Select(r => (JsonNode)new JsonObject
            {
                ["scenario"] = r.Scenario,
                ["measure"] = r.Measure,
                ["goal"] = r.Goal,
                ["measured"] = r.Measured,
                ["value"] = r.Value,
                ["met"] = r.Met,
            })]),
            ["details"] = _details.DeepClone(),
        };
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
