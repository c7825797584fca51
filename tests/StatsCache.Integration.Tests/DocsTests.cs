using System.Text.RegularExpressions;

namespace StatsCache.Integration.Tests;

/// <summary>The README and docs/ must not drift: every relative link resolves, every configuration key they name is read.</summary>
public sealed partial class DocsTests
{
    private static readonly string Repository = DeployFilesTests.Repository;

    [Fact]
    public void EveryRelativeLinkResolvesToAFileAndHeading()
    {
        var links = 0;
        foreach (var doc in Docs())
        {
            foreach (Match link in Link().Matches(Prose(File.ReadAllText(doc))))
            {
                var target = link.Groups[1].Value;
                if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
                {
                    continue;
                }

                links++;
                var (path, anchor) = target.Split('#', 2) is [var p, var a] ? (p, a) : (target, null);
                var file = path.Length == 0 ? doc : Path.GetFullPath(Path.Combine(Path.GetDirectoryName(doc)!, path));
                Assert.True(File.Exists(file) || Directory.Exists(file), $"{Name(doc)} links to '{target}', which does not exist.");
                if (anchor is not null)
                {
                    Assert.True(Anchors(file).Contains(anchor), $"{Name(doc)} links to '{target}': {Name(file)} has no heading '#{anchor}'.");
                }
            }
        }

        Assert.True(links > 20, $"Only {links} relative links found: the docs were not read as expected.");
    }

    [Fact]
    public void EveryConfigurationKeyNamedIsOneTheCodeReads()
    {
        var known = DeployFilesTests.KnownKeys();
        known.Add("Orleans:Clustering"); // Orleans' own section, named to say why StatsCache's is Orleans:Membership
        var named = 0;
        foreach (var doc in Docs())
        {
            foreach (Match match in Key().Matches(File.ReadAllText(doc)))
            {
                named++;
                var key = match.Value.Replace("__", ":", StringComparison.Ordinal);
                Assert.True(
                    known.Contains(key) || known.Any(k => k.StartsWith(key + ":", StringComparison.OrdinalIgnoreCase)) || key.StartsWith("Logging:", StringComparison.Ordinal),
                    $"{Name(doc)} names '{match.Value}', which the code does not read.");
            }
        }

        Assert.True(named > 40, $"Only {named} configuration keys found: the docs were not read as expected.");
    }

    private static IEnumerable<string> Docs() =>
        Directory.GetFiles(Path.Combine(Repository, "docs"), "*.md").Prepend(Path.Combine(Repository, "README.md"));

    private static string Name(string file) => Path.GetRelativePath(Repository, file);

    // Links inside code blocks and spans are not links.
    private static string Prose(string markdown) => CodeSpan().Replace(CodeBlock().Replace(markdown, ""), "");

    // GitHub's anchors: headings lower-cased, punctuation other than '-' and '_' dropped, spaces made '-'.
    private static HashSet<string> Anchors(string file) =>
        [.. Heading().Matches(CodeBlock().Replace(File.ReadAllText(file), ""))
            .Select(m => NotAnchor().Replace(m.Groups[1].Value.Trim().ToLowerInvariant(), "").Replace(' ', '-'))];

    [GeneratedRegex(@"\]\(([^)\s]+)\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"^#{1,6} (.+)$", RegexOptions.Multiline)]
    private static partial Regex Heading();

    [GeneratedRegex(@"[^\w\- ]")]
    private static partial Regex NotAnchor();

    [GeneratedRegex(@"^```.*?^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex CodeBlock();

    [GeneratedRegex(@"`[^`\n]*`")]
    private static partial Regex CodeSpan();

    [GeneratedRegex(@"\b(?:Auth|StatsCache|Orleans|ConnectionStrings|Observability)(?::|__)[A-Za-z][A-Za-z0-9]*(?:(?::|__)[A-Za-z][A-Za-z0-9]*)*")]
    private static partial Regex Key();
}
