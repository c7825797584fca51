# The silo: hosts the dashboard grains. Build from the repository root:
#   docker build -f deploy/docker/Silo.Dockerfile -t statscache-silo .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/Silo/StatsCache.Silo.csproj -c Release -o /app

# aspnet, not runtime: the Orleans Dashboard package (Orleans:IsDashboardEnabled) needs the ASP.NET Core framework.
FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# The image's non-root user (APP_UID, 1654).
USER $APP_UID
# Silo-to-silo and gateway ports (Orleans:SiloPort, Orleans:GatewayPort); Prometheus metrics when
# Observability:SiloMetricsPort is set to 9464.
EXPOSE 11111 30000 9464
ENTRYPOINT ["dotnet", "StatsCache.Silo.dll"]
