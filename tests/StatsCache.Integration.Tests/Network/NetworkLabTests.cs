using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace StatsCache.Integration.Tests.Network;

/// <summary>The network lab itself: its links carry TCP, and each kind of fault does what it says, no more.</summary>
[Collection(DatabaseCollection.Name)]
public sealed class NetworkLabTests
{
    [Fact]
    public async Task LinksCarryTcpAndFaultsCutDelayAndHealThem()
    {
        await using var lab = await NetworkLab.CreateAsync("a", "b");
        using var listener = new TcpListener(lab.HostAddress, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        var echo = EchoAsync(listener, stop.Token);

        // Healthy: both hosts reach this machine, quickly.
        var healthy = await RoundTripAsync(lab["a"], lab.HostAddress, port);
        Assert.True(healthy.Answered, healthy.Output);
        Assert.True((await RoundTripAsync(lab["b"], lab.HostAddress, port)).Answered);

        // Cut off: a gets nothing through; b is untouched.
        lab.Set(Fault.Isolate(lab["a"]));
        Assert.False((await RoundTripAsync(lab["a"], lab.HostAddress, port)).Answered);
        Assert.True((await RoundTripAsync(lab["b"], lab.HostAddress, port)).Answered);

        // A cut from one port of this machine spares its other ports.
        lab.Set(Fault.FromMachinePort(lab["b"], "the echo", port));
        Assert.False((await RoundTripAsync(lab["b"], lab.HostAddress, port)).Answered);
        Assert.True((await RoundTripAsync(lab["a"], lab.HostAddress, port)).Answered);

        // Delay: every packet waits, so a round trip (connect, then echo) takes at least four crossings; healthy, far less.
        lab.Set(Fault.Degrade(TimeSpan.FromMilliseconds(200), loss: 0));
        var delayed = await RoundTripAsync(lab["a"], lab.HostAddress, port);
        Assert.True(delayed.Answered, delayed.Output);
        Assert.True(delayed.Took >= TimeSpan.FromMilliseconds(800), $"took {delayed.Took.TotalMilliseconds:F0} ms");
        Assert.True(healthy.Took < TimeSpan.FromMilliseconds(800), $"a healthy round trip took {healthy.Took.TotalMilliseconds:F0} ms");

        lab.Heal();
        Assert.True((await RoundTripAsync(lab["a"], lab.HostAddress, port)).Answered);
        Assert.True(lab.Counts.Dropped > 0);
        await stop.CancelAsync();
        listener.Stop();
        await echo;
    }

    /// <summary>
    /// Connects from a host to this machine and sends a line, which the echo sends back; false if no answer within 3 s. The time
    /// is the connection's and the echo's alone, taken by the shell in the host (not the start of the processes).
    /// </summary>
    private static async Task<(bool Answered, TimeSpan Took, string Output)> RoundTripAsync(LabHost host, IPAddress address, int port)
    {
        var start = NetworkLab.StartInfo(host, "timeout", ["3", "bash", "-c",
            $"s=$EPOCHREALTIME; exec 3<>/dev/tcp/{address}/{port}; echo ping >&3; head -n 1 <&3; echo $s $EPOCHREALTIME"]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (process.ExitCode != 0 || lines.Length < 2 || lines[0] != "ping")
        {
            return (false, TimeSpan.Zero, output);
        }

        var times = lines[1].Split(' ').Select(t => double.Parse(t, CultureInfo.InvariantCulture)).ToArray();
        return (true, TimeSpan.FromSeconds(times[1] - times[0]), output);
    }

    private static async Task EchoAsync(TcpListener listener, CancellationToken stop)
    {
        var connections = new List<Task>();
        try
        {
            while (true)
            {
                var client = await listener.AcceptTcpClientAsync(stop);
                connections.Add(Task.Run(async () =>
                {
                    using (client)
                    {
                        var stream = client.GetStream();
                        var buffer = new byte[64];
                        var read = await stream.ReadAsync(buffer, stop);
                        await stream.WriteAsync(Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(buffer, 0, read)), stop);
                    }
                }, stop));
            }
        }
        catch (OperationCanceledException)
        {
        }

        await Task.WhenAll(connections.Select(c => c.ContinueWith(_ => { }, TaskScheduler.Default)));
    }
}
