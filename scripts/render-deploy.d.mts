export declare const DEPLOY_NAMESPACE: string;
export declare function renderDeploy(helm: string): Promise<Map<string, string>>;
