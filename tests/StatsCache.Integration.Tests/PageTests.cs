using System.Diagnostics;
using System.Net;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;

namespace StatsCache.Integration.Tests;

/// <summary>
/// The dashboard page in a real browser (Debian's headless Chromium through chromedriver, installed by test.sh)
/// against the web host on Kestrel, real PostgreSQL and the change feed: the demo client's numbers show, a committed
/// order shows within 2 s without a reload, the token never stays in the URL, and the page works at 375 px and from
/// the keyboard. Screenshots are saved next to the test assembly (screenshots/).
/// </summary>
[Collection(DatabaseCollection.Name)]
public sealed class PageTests(TestDatabase db, ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly string Screenshots = Path.Combine(AppContext.BaseDirectory, "screenshots");

    private readonly StatsCacheFactory _web = new();
    private string _address = "";

    public async Task InitializeAsync()
    {
        _web.Settings["StatsCache:Changes:IsEnabled"] = "true";
        var port = StatsCacheFactory.FreePort();
        _web.UseKestrel(port);
        _web.StartServer();
        _address = $"http://127.0.0.1:{port}";
        await ChangeFeedTests.WaitUntilListeningAsync(_web, db.DataSource);
    }

    public async Task DisposeAsync() => await _web.DisposeAsync();

    [Fact]
    public async Task ShowsTheClientsNumbersAndAnOrderWithin2SecondsWithoutAReload()
    {
        var site = await db.NewWebsiteAsync();
        var client = await db.NewUserAsync(site, "client");
        for (var i = 0; i < 3; i++)
        {
            await db.NewOrderAsync(site, client, 25m);
        }

        using var browser = Browser(1280, 1000);
        browser.Navigate().GoToUrl($"{_address}/#token={_web.TokenFor(site, "client", client)}");
        var wait = new WebDriverWait(browser, TimeSpan.FromSeconds(10));
        wait.Until(_ => Figure(browser, "client-stats", "total orders") == "3");
        Assert.DoesNotContain("token", browser.Url, StringComparison.Ordinal); // taken from the fragment, then removed
        Assert.Contains($"user {client}", browser.FindElement(By.Id("who")).Text, StringComparison.Ordinal);
        foreach (var view in new[] { "client-stats", "client-loyalty", "client-analytics" })
        {
            Assert.True(browser.FindElement(By.CssSelector($"article[data-view='{view}'] time")).Displayed, $"{view} shows its asOf");
        }

        // The monthly series is drawn as a chart (an SVG labelled for screen readers).
        Assert.Contains("by month start", browser.FindElement(By.CssSelector("article[data-view='client-analytics'] svg[role='img']")).GetAttribute("aria-label"), StringComparison.Ordinal);

        ((IJavaScriptExecutor)browser).ExecuteScript("window.notReloaded = true;");
        var written = Stopwatch.StartNew();
        await db.NewOrderAsync(site, client, 25m);
        new WebDriverWait(browser, TimeSpan.FromSeconds(2)) { PollingInterval = TimeSpan.FromMilliseconds(20) }
            .Until(_ => Figure(browser, "client-stats", "total orders") == "4");
        var visible = written.Elapsed;
        output.WriteLine($"write to page: {visible.TotalMilliseconds:F0} ms");
        Assert.Equal(true, ((IJavaScriptExecutor)browser).ExecuteScript("return window.notReloaded === true;"));
        Save(browser, "dashboard-client.png");
    }

    [Fact]
    public async Task AnAdminsCardsAreReadableAt375PixelsAndTheTokenCanBePastedWithTheKeyboard()
    {
        var site = await db.NewWebsiteAsync();
        var admin = await db.NewUserAsync(site, "admin");
        await db.NewOrderAsync(site, await db.NewUserAsync(site, "client"), 40m);

        using var browser = Browser(500, 900);
        // A phone's viewport: headless windows are at least 500 px wide, so the width is emulated.
        browser.ExecuteCdpCommand("Emulation.setDeviceMetricsOverride", new Dictionary<string, object?>
        {
            ["width"] = 375, ["height"] = 800, ["deviceScaleFactor"] = 1, ["mobile"] = true,
        });
        browser.Navigate().GoToUrl(_address + "/");
        var token = browser.FindElement(By.Id("token"));
        Assert.True(token.Displayed);
        Assert.Equal("Access token", browser.FindElement(By.CssSelector("label[for='token']")).Text);
        token.SendKeys(_web.TokenFor(site, "admin", admin));
        token.SendKeys(Keys.Tab); // to the submit button
        browser.SwitchTo().ActiveElement().SendKeys(Keys.Enter);

        var wait = new WebDriverWait(browser, TimeSpan.FromSeconds(10));
        wait.Until(_ => Figure(browser, "admin-overview", "total") == "1");
        Assert.Equal(6, browser.FindElements(By.CssSelector("article.card")).Count);
        var width = Convert.ToInt64(((IJavaScriptExecutor)browser).ExecuteScript("return document.documentElement.scrollWidth;"), System.Globalization.CultureInfo.InvariantCulture);
        Save(browser, "dashboard-admin-375.png");
        Assert.True(width <= 375, $"The page is {width} px wide at 375 px: it scrolls sideways.");
        Assert.False(browser.FindElement(By.Id("token-form")).Displayed); // signed in: the form is gone
    }

    [Fact]
    public async Task ThePageItselfIsServedWithoutATokenUnderAStrictContentSecurityPolicy()
    {
        using var http = new HttpClient { BaseAddress = new Uri(_address) };
        using var page = await http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("script-src 'self'", string.Join(";", page.Headers.GetValues("Content-Security-Policy")), StringComparison.Ordinal);
        using var script = await http.GetAsync("/app.js");
        Assert.Equal(HttpStatusCode.OK, script.StatusCode);
        using var api = await http.GetAsync("/api/dashboards");
        Assert.Equal(HttpStatusCode.Unauthorized, api.StatusCode); // the page is open, the numbers are not
    }

    private static ChromeDriver Browser(int width, int height)
    {
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", $"--window-size={width},{height}");
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.SuppressInitialDiagnosticInformation = true;
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    // The value of a view card's key figure, or null while it is not shown.
    private static string? Figure(IWebDriver browser, string view, string name)
    {
        try
        {
            return browser.FindElement(By.XPath($"//article[@data-view='{view}']//dt[.='{name}']/following-sibling::dd")).Text;
        }
        catch (Exception e) when (e is NoSuchElementException or StaleElementReferenceException)
        {
            return null;
        }
    }

    private void Save(ChromeDriver browser, string name)
    {
        Directory.CreateDirectory(Screenshots);
        var path = Path.Combine(Screenshots, name);
        browser.GetScreenshot().SaveAsFile(path);
        output.WriteLine($"screenshot: {path}");
    }
}
