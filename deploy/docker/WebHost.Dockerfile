# The web host: JWT, the HTTP API, and an Orleans client (or an in-process silo).
# It also runs the one-off `setup` command. Build from the repository root:
#   docker build -f deploy/docker/WebHost.Dockerfile -t statscache-webhost .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/WebHost/StatsCache.WebHost.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
USER $APP_UID
ENV ASPNETCORE_URLS=http://+:8080
EXPOSE 8080
ENTRYPOINT ["dotnet", "StatsCache.WebHost.dll"]
