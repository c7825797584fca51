using StatsCache.Benchmarks;

// One binary, five jobs (./bench.sh runs the driver, which starts the others):
//   serve      the benchmark host: the real API next to the contenders' endpoints
//   minimal    hit's minimal ASP.NET Core endpoint (--metrics: with src/WebHost's error handling and metrics)
//   drive      the scenarios of issue 5, side by side; prints the table (and JSON with --json FILE)
//   refresh    one silo holding many entries with a short TTL (a child process of the driver)
//   micro      BenchmarkDotNet micro-benchmarks of the cached read's hot path
return args switch
{
    ["drive", .. var rest] => await Driver.RunAsync(rest),
    ["refresh", .. var rest] => await RefreshScenario.RunChildAsync(rest),
    ["micro", .. var rest] => MicroBenchmarks.Run(rest),
    ["minimal", "--metrics", .. var rest] => await MinimalEndpoint.RunWithMetricsAsync(rest),
    ["minimal", .. var rest] => await MinimalEndpoint.RunAsync(rest),
    ["serve", .. var rest] => await BenchHost.RunAsync(rest),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: StatsCache.Benchmarks serve | minimal [--metrics] | drive [SCENARIO...] [--json FILE] | refresh | micro [BenchmarkDotNet args]");
    return 2;
}
