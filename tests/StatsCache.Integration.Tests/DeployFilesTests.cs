using System.Reflection;
using System.Text.RegularExpressions;
using StatsCache.Cache;
using StatsCache.Changes;
using StatsCache.Hosting;
using StatsCache.Source;
using StatsCache.WebHost.Api;
using StatsCache.WebHost.Auth;
using StatsCache.WebHost.Hosting;
using StatsCache.WebHost.Live;
using StatsCache.WebHost.NearCache;
using YamlDotNet.RepresentationModel;

namespace StatsCache.Integration.Tests;

/// <summary>The deploy files must not drift from the code: they name only keys it reads, on the runtime it targets.</summary>
public sealed partial class DeployFilesTests
{
    internal static readonly string Repository = FindRepository();

    [Fact]
    public void ComposeFileAndManifestsNameOnlyKeysTheCodeReads()
    {
        var known = KnownKeys();
        var files = Directory.GetFiles(Path.Combine(Repository, "deploy", "k8s"), "*.yaml")
            .Append(Path.Combine(Repository, "deploy", "docker-compose.yml"))
            .ToList();

        var checkedKeys = 0;
        foreach (var file in files)
        {
            foreach (var (container, key) in OurEnvironment(file))
            {
                checkedKeys++;
                var normalized = key.Replace("__", ":", StringComparison.Ordinal);
                Assert.True(
                    known.Contains(normalized) || normalized.StartsWith("Logging:", StringComparison.OrdinalIgnoreCase),
                    $"{Path.GetFileName(file)} ({container}) sets '{key}', which StatsCache does not read.");
            }
        }

        Assert.True(checkedKeys > 20, $"Only {checkedKeys} keys found: the files were not parsed as expected.");
    }

    [Fact]
    public void EveryDeployedProcessGetsItsRequiredSettings()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(Repository, "deploy", "k8s"), "*.yaml").Append(Path.Combine(Repository, "deploy", "docker-compose.yml")))
        {
            foreach (var group in OurEnvironment(file).GroupBy(e => e.Container))
            {
                var keys = group.Select(e => e.Key).ToHashSet(StringComparer.Ordinal);
                Assert.True(keys.Contains("ConnectionStrings__Stats"), $"{Path.GetFileName(file)} ({group.Key}) does not set ConnectionStrings__Stats.");
                if (keys.Contains("Orleans__Mode"))
                {
                    Assert.True(keys.Contains("Auth__SigningKey"), $"{Path.GetFileName(file)} ({group.Key}) serves HTTP without Auth__SigningKey.");
                }
            }
        }
    }

    [Fact]
    public void DockerfilesUseTheRuntimeTheProjectsTarget()
    {
        var props = File.ReadAllText(Path.Combine(Repository, "Directory.Build.props"));
        var version = TargetFramework().Match(props).Groups[1].Value;
        foreach (var file in Directory.GetFiles(Path.Combine(Repository, "deploy", "docker"), "*.Dockerfile"))
        {
            var images = FromLine().Matches(File.ReadAllText(file)).Select(m => m.Groups[1].Value).ToList();
            Assert.NotEmpty(images);
            Assert.All(images, image => Assert.EndsWith($":{version}", image));
            Assert.Contains("USER $APP_UID", File.ReadAllText(file));
        }
    }

    /// <summary>Configuration keys StatsCache reads: its options classes, connection strings, and the hosts' own.</summary>
    internal static HashSet<string> KnownKeys()
    {
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
        {
            "ConnectionStrings:Stats", "ConnectionStrings:Orleans", StatsCacheHostingExtensions.CatalogPathKey,
            "ASPNETCORE_URLS", "ASPNETCORE_ENVIRONMENT", "DOTNET_ENVIRONMENT",
            // Read by Orleans' UseKubernetesHosting (Orleans:IsKubernetesHostingEnabled).
            "POD_NAME", "POD_NAMESPACE", "POD_IP", "ORLEANS_SERVICE_ID", "ORLEANS_CLUSTER_ID",
            // Read by the OpenTelemetry SDK; its endpoint also switches tracing on (TelemetryExtensions).
            TelemetryExtensions.OtlpEndpointKey,
        };
        foreach (var (type, section) in new[]
        {
            (typeof(OrleansHostingOptions), OrleansHostingOptions.SectionName),
            (typeof(AuthOptions), AuthOptions.SectionName),
            (typeof(ClaimNames), $"{AuthOptions.SectionName}:{nameof(AuthOptions.Claims)}"),
            (typeof(RequestLimitOptions), RequestLimitOptions.SectionName),
            (typeof(NearCacheOptions), NearCacheOptions.SectionName),
            (typeof(LiveOptions), LiveOptions.SectionName),
            (typeof(DashboardCacheOptions), DashboardCacheOptions.SectionName),
            (typeof(ApiOptions), ApiOptions.SectionName),
            (typeof(ChangeFeedOptions), ChangeFeedOptions.SectionName),
            (typeof(SourceOptions), SourceOptions.SectionName),
            (typeof(ObservabilityOptions), ObservabilityOptions.SectionName),
        })
        {
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
            {
                keys.Add($"{section}:{property.Name}");
            }
        }

        return keys;
    }

    /// <summary>Environment variables of the containers that run StatsCache images (not PostgreSQL's).</summary>
    private static IEnumerable<(string Container, string Key)> OurEnvironment(string file)
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(file))
        {
            stream.Load(reader);
        }

        foreach (var document in stream.Documents)
        {
            var root = (YamlMappingNode)document.RootNode;
            if (Child(root, "services") is YamlMappingNode services)
            {
                foreach (var (name, node) in services.Children)
                {
                    var service = (YamlMappingNode)node;
                    if (Scalar(service, "image")?.StartsWith("statscache-", StringComparison.Ordinal) == true)
                    {
                        foreach (var key in MappingKeys(Child(service, "environment")))
                        {
                            yield return (name.ToString(), key);
                        }
                    }
                }

                continue;
            }

            var pod = Child(Child(Child(root, "spec"), "template"), "spec");
            if (Child(pod, "containers") is not YamlSequenceNode containers)
            {
                continue;
            }

            foreach (var container in containers.Children.Cast<YamlMappingNode>()
                .Where(c => Scalar(c, "image")?.StartsWith("statscache-", StringComparison.Ordinal) == true))
            {
                if (Child(container, "env") is YamlSequenceNode env)
                {
                    foreach (var variable in env.Children.Cast<YamlMappingNode>())
                    {
                        yield return (Scalar(container, "name")!, Scalar(variable, "name")!);
                    }
                }
            }
        }
    }

    // A compose environment map; `<<: *anchor` merges another map in.
    private static IEnumerable<string> MappingKeys(YamlNode? node)
    {
        if (node is not YamlMappingNode map)
        {
            yield break;
        }

        foreach (var (key, value) in map.Children)
        {
            if (key.ToString() == "<<")
            {
                foreach (var merged in MappingKeys(value))
                {
                    yield return merged;
                }
            }
            else
            {
                yield return key.ToString();
            }
        }
    }

    private static YamlNode? Child(YamlNode? node, string key) =>
        node is YamlMappingNode map && map.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child : null;

    private static string? Scalar(YamlNode? node, string key) => (Child(node, key) as YamlScalarNode)?.Value;

    private static string FindRepository()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "StatsCache.slnx")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("StatsCache.slnx not found above the test assembly.");
    }

    [GeneratedRegex(@"<TargetFramework>net(\d+\.\d+)</TargetFramework>")]
    private static partial Regex TargetFramework();

    [GeneratedRegex(@"^FROM\s+(\S+)", RegexOptions.Multiline)]
    private static partial Regex FromLine();
}
