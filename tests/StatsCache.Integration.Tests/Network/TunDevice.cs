using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace StatsCache.Integration.Tests.Network;

/// <summary>
/// A Linux TUN device (layer 3, no packet information header) owned by this process: what the kernel routes to it is
/// read here, and what is written here the kernel receives as if it arrived on it. The device disappears when it is
/// disposed. It may be moved to another network namespace (<c>ip link set … netns …</c>) and still be read here.
/// </summary>
internal sealed partial class TunDevice : IDisposable
{
    private const int ReadWrite = 2;
    private const int CloseOnExec = 0x80000;
    private const uint TunSetInterface = 0x400454ca; // TUNSETIFF
    private const short Tun = 0x0001; // IFF_TUN
    private const short NoPacketInformation = 0x1000; // IFF_NO_PI
    private const short PollIn = 0x001;
    private const int InterruptedCall = 4; // EINTR
    private const int TryAgain = 11; // EAGAIN

    private readonly int _fd;
    private int _disposed;

    public TunDevice(string name)
    {
        if (Encoding.ASCII.GetByteCount(name) > 15)
        {
            throw new ArgumentException($"Interface name '{name}' is longer than 15 characters.", nameof(name));
        }

        _fd = Open("/dev/net/tun", ReadWrite | CloseOnExec);
        if (_fd < 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "open /dev/net/tun");
        }

        // struct ifreq: the name (16 bytes, NUL-terminated), then the flags.
        var request = new byte[40];
        Encoding.ASCII.GetBytes(name, request);
        BitConverter.TryWriteBytes(request.AsSpan(16), (short)(Tun | NoPacketInformation));
        if (IoControl(_fd, TunSetInterface, request) < 0)
        {
            var error = Marshal.GetLastPInvokeError();
            Close(_fd);
            throw new Win32Exception(error, $"TUNSETIFF {name}");
        }

        Name = name;
    }

    public string Name { get; }

    /// <summary>
    /// Reads one packet into <paramref name="buffer"/>; 0 when none came within <paramref name="timeoutMilliseconds"/>
    /// (so a reader can notice it should stop), -1 once the device is disposed.
    /// </summary>
    public int Read(byte[] buffer, int timeoutMilliseconds)
    {
        var poll = new PollFd { Fd = _fd, Events = PollIn };
        var ready = Poll(ref poll, 1, timeoutMilliseconds);
        if (Volatile.Read(ref _disposed) != 0)
        {
            return -1;
        }

        if (ready <= 0)
        {
            return ready < 0 && Marshal.GetLastPInvokeError() != InterruptedCall ? -1 : 0;
        }

        var read = ReadFd(_fd, buffer, buffer.Length);
        return read >= 0 ? (int)read : Marshal.GetLastPInvokeError() is InterruptedCall or TryAgain ? 0 : -1;
    }

    /// <summary>Hands the kernel one packet as if it arrived on this device; a packet the kernel refuses is lost, as on a wire.</summary>
    public void Write(byte[] packet, int length)
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            WriteFd(_fd, packet, length);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Close(_fd);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoControl(int fd, nuint request, byte[] argument);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(ref PollFd fds, nuint count, int timeout);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadFd(int fd, byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteFd(int fd, byte[] buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
